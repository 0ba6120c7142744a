"""The ``weightspace`` command line: a thin layer over the library's task functions.

::

    weightspace zoo --dataset NAME --networks N --out DIR [--seed S] [--epochs E] [--device D]
    weightspace zoo import --checkpoints DIR --targets FILE.csv --out ZOO [--module pkg.mod:F]
                           [--target COLUMN] [--activation NAME] [--split-seed S]
    weightspace train generalization --zoo DIR --model hnp|np|statnet|mlp --out RUN [--seed S]
                                     [--epochs E]
    weightspace inr fit --dataset NAME --out DIR [--seed S] [--limit N] [--augment K] [--steps T]
                        [--device D]
    weightspace inr show --inrs DIR --out PNG [--n 16]
    weightspace inr edit --run RUN --inrs DIR --out DIR2       (INRs edited by a trained editor)
    weightspace train inr-classify --inrs DIR --model np|hnp|mlp|mlp-aug --out RUN [--seed S]
                                   [--epochs E]
    weightspace train inr-edit --inrs DIR --edit dilate|contrast|erode|sharpen
                               --model np|hnp|pt|mlp --out RUN [--seed S] [--steps T]
    weightspace tickets generate --dataset NAME --networks N --out DIR [--seed S] [--sparsity 0.95]
                                 [--device D]
    weightspace train tickets --tickets DIR --model np|hnp|pt --out RUN [--seed S] [--epochs E]
    weightspace tickets predict --run RUN --init FILE.safetensors --out MASK.safetensors
    weightspace evaluate --run RUN --zoo DIR | --inrs DIR | --tickets DIR
                                                              (writes RUN/eval/<DIR name>/)
    weightspace demo [--out DIR] [--networks N] [--epochs E] [--dataset NAME] [--zoo-epochs E]

``--device`` (``auto``: CUDA when available, else CPU) is accepted by every command that trains
or runs networks; a data folder records the device type it was computed on and resumes only on
that type.

Each command parses its arguments into a config and calls one function
(:func:`~weightspace.data.zoo.generate_zoo`, :func:`~weightspace.data.zoo_import.import_zoo`,
:func:`~weightspace.data.inr.fit_inrs`,
:func:`~weightspace.data.inr.show_grid`, :func:`~weightspace.tasks.demo.run_demo`).
``train`` and ``evaluate`` are generated from :data:`weightspace.tasks.registry.TASKS`: one
``train COMMAND`` per task, whose options and defaults are its config dataclass's fields, calling
:func:`weightspace.tasks.runner.run`; ``evaluate`` reads the task from ``RUN/config.json`` and
calls :func:`weightspace.tasks.runner.evaluate`, which writes into ``RUN/eval/<data name>/``.

A ``ValueError`` (bad input, a missing or foreign folder, a config that differs from the run
being resumed) or an ``OSError`` (a path that is a file, a read-only folder, a full disk: named
with its cause) is printed as one line on stderr and the exit status is 2, as for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightspace.tasks.base import int_tuple, positive_int

if TYPE_CHECKING:
    from weightspace.tasks.base import Task

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
_DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (its sub-parsers are too) whose ``required_unless = (dest,
    options)`` makes ``options`` required when the sub-command ``dest`` is absent:
    ``weightspace zoo --dataset ...`` generates, ``weightspace zoo import ...`` does not need it."""

    required_unless: tuple[str, tuple[str, ...]] | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if self.required_unless is not None:
            dest, options = self.required_unless
            if getattr(namespace, dest, None) is None:
                missing = [
                    option
                    for option in options
                    if getattr(namespace, self._option_string_actions[option].dest) is None
                ]
                if missing:
                    self.error(f"the following arguments are required: {', '.join(missing)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``weightspace`` (its subcommands set ``args.handler``)."""
    from weightspace import __version__
    from weightspace.tasks.registry import TASKS

    parser = _Parser(
        prog="weightspace",
        description="Neural functional networks: learn from the weights of other networks.",
    )
    parser.add_argument("--version", action="version", version=f"weightspace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser(
        "zoo",
        help="train a zoo of small CNNs on an image dataset (or `zoo import` your own networks)",
        usage=(
            "weightspace zoo --dataset NAME --networks N --out DIR [options]\n"
            "       weightspace zoo import --checkpoints DIR --targets FILE.csv --out ZOO "
            "[options]"
        ),
    )
    # Required unless `import` follows (checked by _Parser): `zoo --dataset ...` generates.
    zoo.add_argument("--dataset", help="mnist, fashion-mnist or digits (required)")
    zoo.add_argument("--networks", type=positive_int, help="how many CNNs (required)")
    zoo.add_argument("--out", help="folder of the zoo, resumed if it exists (required)")
    zoo.required_unless = ("zoo_command", ("--dataset", "--networks", "--out"))
    zoo.add_argument("--seed", type=int, default=0)
    zoo.add_argument("--epochs", type=positive_int, default=None, help="epochs per CNN")
    zoo.add_argument("--chunk-size", type=positive_int, default=None, help="CNNs per file")
    zoo.add_argument(
        "--checkpoints",
        type=positive_int,
        default=None,
        help="save K checkpoints per CNN, spread evenly over training (default: about 3)",
    )
    zoo.add_argument("--limit-train", type=positive_int, default=None, help="training images")
    zoo.add_argument("--limit-test", type=positive_int, default=None, help="test images")
    zoo.add_argument("--device", default="auto", help=_DEVICE_HELP)
    zoo.set_defaults(handler=_zoo)
    zoo_commands = zoo.add_subparsers(dest="zoo_command", metavar="import")
    imp = zoo_commands.add_parser(
        "import", help="a zoo from your own checkpoints (.safetensors, .pt) and a CSV of targets"
    )
    imp.add_argument("--checkpoints", required=True, help="folder of .safetensors/.pt/.pth files")
    imp.add_argument(
        "--targets", required=True, help="CSV: name (file name), target column, optional split"
    )
    imp.add_argument("--out", required=True, help="zoo folder to create (new or empty)")
    imp.add_argument(
        "--module", default=None, help="pkg.mod:Factory building a template: keys read by name"
    )
    imp.add_argument("--target", default=None, help="CSV column of the target (first numeric)")
    imp.add_argument("--activation", default=None, help="the networks' activation (relu, tanh…)")
    imp.add_argument(
        "--split-seed", type=int, default=None, help="draw the 70/15/15 split now with this seed"
    )
    imp.set_defaults(handler=_zoo_import)

    inr = commands.add_parser("inr", help="fit one SIREN per image, and look at them")
    inr_commands = inr.add_subparsers(dest="inr_command", required=True, metavar="ACTION")
    inr_fit = inr_commands.add_parser("fit", help="fit a SIREN to every image of a dataset")
    inr_fit.add_argument("--dataset", required=True, help="mnist, fashion-mnist or digits")
    inr_fit.add_argument("--out", required=True, help="folder of the INRs (resumed if it exists)")
    inr_fit.add_argument("--seed", type=int, default=None)
    inr_fit.add_argument("--limit", type=positive_int, default=None, help="images per split")
    inr_fit.add_argument(
        "--augment", type=int, default=None, help="extra fits of each training image"
    )
    inr_fit.add_argument("--steps", type=positive_int, default=None, help="Adam steps per SIREN")
    inr_fit.add_argument("--device", default="auto", help=_DEVICE_HELP)
    inr_fit.set_defaults(handler=_inr_fit)
    inr_show = inr_commands.add_parser(
        "show", help="PNG of original images above their SIREN reconstructions"
    )
    inr_show.add_argument("--inrs", required=True, help="folder written by `weightspace inr fit`")
    inr_show.add_argument("--out", required=True, help="the PNG to write")
    inr_show.add_argument("--n", type=positive_int, default=16, help="how many INRs to show")
    inr_show.set_defaults(handler=_inr_show)
    inr_edit = inr_commands.add_parser(
        "edit", help="edit every INR of a folder with a trained `train inr-edit` run"
    )
    inr_edit.add_argument("--run", required=True, help="run folder of `weightspace train inr-edit`")
    inr_edit.add_argument("--inrs", required=True, help="folder written by `weightspace inr fit`")
    inr_edit.add_argument("--out", required=True, help="INR folder to write (resumed if it exists)")
    inr_edit.add_argument("--device", default="auto", help=_DEVICE_HELP)
    inr_edit.set_defaults(handler=_inr_edit)

    tickets = commands.add_parser(
        "tickets", help="winning tickets: (init, IMP mask) pairs, and masks predicted for inits"
    )
    ticket_commands = tickets.add_subparsers(
        dest="tickets_command", required=True, metavar="ACTION"
    )
    generate = ticket_commands.add_parser(
        "generate", help="train MLPs densely, prune by magnitude, retrain the tickets"
    )
    generate.add_argument("--dataset", required=True, help="mnist, fashion-mnist or digits")
    generate.add_argument("--networks", required=True, type=positive_int, help="how many MLPs")
    generate.add_argument("--out", required=True, help="folder of the set (resumed if it exists)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--sparsity", type=float, default=0.95, help="pruned share of the weights, in (0, 1)"
    )
    generate.add_argument("--epochs", type=positive_int, default=None, help="epochs per training")
    generate.add_argument("--hidden", type=int_tuple, default=None, help="hidden widths (128,128)")
    generate.add_argument("--chunk-size", type=positive_int, default=None, help="MLPs per file")
    generate.add_argument("--limit-train", type=positive_int, default=None, help="training images")
    generate.add_argument("--limit-test", type=positive_int, default=None, help="test images")
    generate.add_argument("--device", default="auto", help=_DEVICE_HELP)
    generate.set_defaults(handler=_tickets_generate)
    predict = ticket_commands.add_parser(
        "predict", help="a sparse mask for your own initialisation, from a `train tickets` run"
    )
    predict.add_argument("--run", required=True, help="run folder of `weightspace train tickets`")
    predict.add_argument(
        "--init", required=True, help="safetensors file of the init (W1 … WL, b1 … bL)"
    )
    predict.add_argument("--out", required=True, help="safetensors file of the mask to write")
    predict.add_argument("--device", default="auto", help=_DEVICE_HELP)
    predict.set_defaults(handler=_tickets_predict)

    train = commands.add_parser("train", help="train a model on weights")
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    ev = commands.add_parser("evaluate", help="score a trained run on a dataset's test split")
    ev.add_argument("--run", required=True, help="run folder written by `weightspace train`")
    # One data flag per kind of run; config.json's task says which one the run takes.
    data = ev.add_mutually_exclusive_group(required=True)
    for task in TASKS.values():
        _add_train_command(tasks, task)
        if f"--{_flag(task.data_field)}" not in data._option_string_actions:
            data.add_argument(
                f"--{_flag(task.data_field)}", help=f"{task.data_help}, for {task.command} runs"
            )
    ev.add_argument("--device", default="auto", help=_DEVICE_HELP)
    ev.set_defaults(handler=_evaluate)

    report = commands.add_parser(
        "report", help="learning curve of finished runs: test metric against training size"
    )
    report.add_argument("--runs", required=True, nargs="+", help="run folders (one task)")
    report.add_argument("--out", required=True, help="folder for learning_curve.{png,csv,md}")
    report.add_argument("--title", default="", help="title of the plot")
    report.set_defaults(handler=_report)

    demo = commands.add_parser(
        "demo", help="zoo → NFN_HNP + probes and StatNN → report, in minutes"
    )
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--networks", type=positive_int, default=None, help="CNNs in the zoo")
    demo.add_argument("--epochs", type=positive_int, default=None, help="predictor epochs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dataset", default=None, help="image dataset of the zoo (mnist)")
    demo.add_argument("--zoo-epochs", type=positive_int, default=None, help="epochs per CNN")
    demo.add_argument("--batch-size", type=positive_int, default=None, help="predictor batch")
    demo.add_argument("--limit-train", type=positive_int, default=None, help="training images")
    demo.add_argument("--limit-test", type=positive_int, default=None, help="test images")
    demo.set_defaults(handler=_demo)
    return parser


def _zoo(args: argparse.Namespace) -> None:
    from weightspace.data.zoo import ZooConfig, generate_zoo

    options: dict[str, Any] = {
        "seed": args.seed,
        "epochs": args.epochs,
        "chunk_size": args.chunk_size,
        "limit_train": args.limit_train,
        "limit_test": args.limit_test,
    }
    if args.checkpoints is not None:
        from weightspace.data.zoo import checkpoint_epochs

        epochs = args.epochs if args.epochs is not None else ZooConfig.epochs
        options["save_epochs"] = checkpoint_epochs(epochs, args.checkpoints)
    # Unset options keep ZooConfig's own defaults.
    config = ZooConfig(
        dataset=args.dataset,
        networks=args.networks,
        out=args.out,
        device=args.device,
        **{k: v for k, v in options.items() if v is not None},
    )
    path = generate_zoo(config)
    print(f"zoo: {path}")


def _zoo_import(args: argparse.Namespace) -> None:
    from weightspace.data.zoo_import import import_zoo, module_from_factory

    module = None if args.module is None else module_from_factory(args.module)
    path = import_zoo(
        args.checkpoints,
        args.targets,
        args.out,
        module=module,
        target_column=args.target,
        activation=args.activation,
        split_seed=args.split_seed,
        module_name=args.module,
    )
    print(f"zoo: {path}")


def _inr_fit(args: argparse.Namespace) -> None:
    from weightspace.data.inr import InrConfig, fit_inrs

    options = {"seed": args.seed, "limit": args.limit, "augment": args.augment, "steps": args.steps}
    # Unset options keep InrConfig's own defaults.
    config = InrConfig(
        dataset=args.dataset,
        out=args.out,
        device=args.device,
        **{k: v for k, v in options.items() if v is not None},
    )
    path = fit_inrs(config)
    print(f"INRs: {path}")


def _inr_show(args: argparse.Namespace) -> None:
    from weightspace.data.images import load_images
    from weightspace.data.inr import INR_FILE, load_inrs, show_grid

    if not (Path(args.inrs) / INR_FILE).is_file():
        raise ValueError(
            f"{args.inrs!r} holds no {INR_FILE}: `inr show` needs a folder written by "
            "`weightspace inr fit`, whose header names the image dataset of the originals"
        )
    data = load_inrs(args.inrs)
    limit = (data.info.get("config") or {}).get("limit")
    # The same limit as the fit: image indices in the rows refer to that subset.
    images = load_images(data.info["dataset"], limit_train=limit, limit_test=limit)
    edit = data.info.get("edit")
    if isinstance(edit, dict):  # `inr edit` output: compare with the edited originals
        from weightspace.data.edits import edit_images
        from weightspace.data.inr import source_images

        shown = data.subset(list(range(min(args.n, len(data)))))
        images = edit_images(source_images(shown, images), str(edit.get("edit")))
    path = show_grid(data, images, args.out, n=args.n)
    print(f"written: {path}")


def _inr_edit(args: argparse.Namespace) -> None:
    from weightspace.tasks.inr_editing import edit_inr_folder

    path = edit_inr_folder(args.run, args.inrs, args.out, device=args.device)
    print(f"edited INRs: {path}")


def _tickets_generate(args: argparse.Namespace) -> None:
    from weightspace.data.tickets import (
        TicketConfig,
        TicketRecipe,
        check_sparsity,
        generate_tickets,
    )

    check_sparsity(args.sparsity, "--sparsity")
    options: dict[str, Any] = {
        "hidden": args.hidden,
        "chunk_size": args.chunk_size,
        "limit_train": args.limit_train,
        "limit_test": args.limit_test,
    }
    if args.epochs is not None:
        options["recipe"] = TicketRecipe(epochs=args.epochs)
    config = TicketConfig(
        dataset=args.dataset,
        networks=args.networks,
        out=args.out,
        seed=args.seed,
        sparsity=args.sparsity,
        device=args.device,
        **{k: v for k, v in options.items() if v is not None},
    )
    path = generate_tickets(config)
    print(f"tickets: {path}")


def _tickets_predict(args: argparse.Namespace) -> None:
    from weightspace.tasks.tickets import predict_mask_file

    path = predict_mask_file(args.run, args.init, args.out, device=args.device)
    print(f"mask: {path}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _add_train_command(commands: Any, task: type[Task]) -> None:
    """``weightspace train COMMAND``: the data folder, model and run folder, then the task's
    ``cli_fields``, each with its dataclass default and help."""
    parser = commands.add_parser(task.command, help=task.help)
    parser.add_argument(f"--{_flag(task.data_field)}", required=True, help=task.data_help)
    parser.add_argument("--model", required=True, choices=task.config_class.models)
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    fields = {f.name: f for f in dataclasses.fields(task.config_class)}
    for name in task.cli_fields:
        options = dict(fields[name].metadata)
        default, text = fields[name].default, options.pop("help", "")
        if default is False:
            parser.add_argument(f"--{_flag(name)}", action="store_true", help=text)
            continue
        if default is not None:
            text = f"{text} (default: %(default)s)"
        parser.add_argument(f"--{_flag(name)}", default=default, help=text, **options)
    parser.set_defaults(handler=_train, task_cls=task)


def _train(args: argparse.Namespace) -> None:
    from weightspace.tasks import runner

    task = args.task_cls
    names = (task.data_field, "model", "out", *task.cli_fields)
    config = task.config_class(**{name: getattr(args, name) for name in names})
    metrics = runner.run(task, config)
    _print_metrics(metrics, f"{args.out}/metrics.json")


def _evaluate(args: argparse.Namespace) -> None:
    from weightspace.tasks import registry, runner

    flags = {
        field: getattr(args, field) for field in {t.data_field for t in registry.TASKS.values()}
    }
    given = next(field for field, value in flags.items() if value is not None)
    saved = runner.read_task(args.run)
    if saved is None:  # no config.json: the runner names what is missing
        task = next(t for t in registry.TASKS.values() if t.data_field == given)
    else:
        name = saved.get("task")
        if name not in registry.TASKS:
            raise ValueError(
                f"{args.run}/config.json: task {name!r} is not one `weightspace evaluate` knows "
                f"(expected one of {tuple(registry.TASKS)})"
            )
        task = registry.TASKS[name]
        if task.data_field != given:
            expected, wrong = _flag(task.data_field), _flag(given)
            raise ValueError(
                f"{args.run!r} is a {name} run; evaluate it with --{expected} DIR, not --{wrong}"
            )
    metrics = runner.evaluate(task, args.run, flags[given], device=args.device)
    _print_metrics(metrics, f"{metrics['out']}/metrics.json")


def _report(args: argparse.Namespace) -> None:
    from weightspace.tasks.report import learning_curve

    rows = learning_curve(args.runs, args.out, title=args.title)
    print(f"{len(rows)} runs -> {Path(args.out) / 'learning_curve.md'}")
    print((Path(args.out) / "learning_curve.md").read_text(encoding="utf-8"))


def _demo(args: argparse.Namespace) -> None:
    from weightspace.tasks.demo import run_demo

    options = {
        "networks": args.networks,
        "epochs": args.epochs,
        "dataset": args.dataset,
        "zoo_epochs": args.zoo_epochs,
        "batch_size": args.batch_size,
        "limit_train": args.limit_train,
        "limit_test": args.limit_test,
    }
    # Unset options keep run_demo's defaults.
    run_demo(args.out, seed=args.seed, **{k: v for k, v in options.items() if v is not None})


def _print_metrics(metrics: dict[str, Any], path: str) -> None:
    from weightspace.io import jsonable

    print(json.dumps(jsonable(metrics), indent=2))
    print(f"written: {path}")


def _one_line(err: BaseException) -> str:
    """The error as one line; an OSError as ``PATH: cause`` (``PATH -> PATH2`` for a rename)."""
    if isinstance(err, OSError) and err.filename is not None:
        where = os.fsdecode(err.filename)
        if err.filename2 is not None:
            where += f" -> {os.fsdecode(err.filename2)}"
        text = f"{where}: {err.strerror or type(err).__name__}"
    else:
        text = str(err)
    return " ".join(text.split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``weightspace`` command line; returns the exit status.

    Usage errors exit through argparse (status 2); a ``ValueError`` or ``OSError`` raised by
    the command is printed as one line ``weightspace COMMAND: error: …`` on stderr and returns 2.
    """
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError) as err:
        print(f"weightspace {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"weightspace {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
