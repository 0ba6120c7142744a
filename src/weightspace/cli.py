"""The ``weightspace`` command line: a thin layer over the library's task functions.

::

    weightspace zoo --dataset NAME --networks N --out DIR [--seed S] [--epochs E]
    weightspace train generalization --zoo DIR --model hnp|np|statnet|mlp --out RUN [--seed S]
                                     [--epochs E]
    weightspace inr fit --dataset NAME --out DIR [--seed S] [--limit N] [--augment K] [--steps T]
    weightspace inr show --inrs DIR --out PNG [--n 16]
    weightspace train inr-classify --inrs DIR --model np|hnp|mlp|mlp-aug --out RUN [--seed S]
                                   [--epochs E]
    weightspace evaluate --run RUN --zoo DIR | --inrs DIR
    weightspace demo [--out DIR] [--networks N] [--epochs E] [--dataset NAME] [--zoo-epochs E]

Each command parses its arguments into a config and calls one function
(:func:`~weightspace.data.zoo.generate_zoo`, :func:`~weightspace.data.inr.fit_inrs`,
:func:`~weightspace.data.inr.show_grid`, :func:`~weightspace.tasks.run_generalization`,
:func:`~weightspace.tasks.inr_classification.run_inr_classification`,
:func:`~weightspace.tasks.evaluate`, :func:`~weightspace.tasks.inr_classification.evaluate_inrs`,
:func:`~weightspace.tasks.demo.run_demo`). A ``ValueError``
(bad input, a missing or foreign folder, a config that differs from the run being resumed) is
printed as one line on stderr and the exit status is 2, as for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``weightspace`` (its subcommands set ``args.handler``)."""
    from weightspace import __version__
    from weightspace.tasks.generalization import MODELS, ZOO_KINDS
    from weightspace.tasks.inr_classification import MODELS as INR_MODELS
    from weightspace.tasks.inr_classification import SOURCES as INR_SOURCES
    from weightspace.tasks.inr_classification import InrClassifyConfig

    inr_default = {f.name: f.default for f in dataclasses.fields(InrClassifyConfig)}

    parser = argparse.ArgumentParser(
        prog="weightspace",
        description="Neural functional networks: learn from the weights of other networks.",
    )
    parser.add_argument("--version", action="version", version=f"weightspace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("zoo", help="train a zoo of small CNNs on an image dataset")
    zoo.add_argument("--dataset", required=True, help="mnist, fashion-mnist or digits")
    zoo.add_argument("--networks", required=True, type=_positive_int, help="how many CNNs")
    zoo.add_argument("--out", required=True, help="folder of the zoo (resumed if it exists)")
    zoo.add_argument("--seed", type=int, default=0)
    zoo.add_argument("--epochs", type=_positive_int, default=None, help="epochs per CNN")
    zoo.add_argument("--chunk-size", type=_positive_int, default=None, help="CNNs per file")
    zoo.add_argument("--limit-train", type=_positive_int, default=None, help="training images")
    zoo.add_argument("--limit-test", type=_positive_int, default=None, help="test images")
    zoo.set_defaults(handler=_zoo)

    inr = commands.add_parser("inr", help="fit one SIREN per image, and look at them")
    inr_commands = inr.add_subparsers(dest="inr_command", required=True, metavar="ACTION")
    inr_fit = inr_commands.add_parser("fit", help="fit a SIREN to every image of a dataset")
    inr_fit.add_argument("--dataset", required=True, help="mnist, fashion-mnist or digits")
    inr_fit.add_argument("--out", required=True, help="folder of the INRs (resumed if it exists)")
    inr_fit.add_argument("--seed", type=int, default=None)
    inr_fit.add_argument("--limit", type=_positive_int, default=None, help="images per split")
    inr_fit.add_argument(
        "--augment", type=int, default=None, help="extra fits of each training image"
    )
    inr_fit.add_argument("--steps", type=_positive_int, default=None, help="Adam steps per SIREN")
    inr_fit.set_defaults(handler=_inr_fit)
    inr_show = inr_commands.add_parser(
        "show", help="PNG of original images above their SIREN reconstructions"
    )
    inr_show.add_argument("--inrs", required=True, help="folder written by `weightspace inr fit`")
    inr_show.add_argument("--out", required=True, help="the PNG to write")
    inr_show.add_argument("--n", type=_positive_int, default=16, help="how many INRs to show")
    inr_show.set_defaults(handler=_inr_show)

    train = commands.add_parser("train", help="train a predictor on weights")
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    gen = tasks.add_parser(
        "generalization", help="predict each network's test accuracy from its weights"
    )
    gen.add_argument("--zoo", required=True, help="zoo folder (generated or the Small CNN Zoo)")
    gen.add_argument("--model", required=True, choices=MODELS)
    gen.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--epochs", type=_positive_int, default=50)
    gen.add_argument("--batch-size", type=_positive_int, default=8)
    gen.add_argument("--lr", type=_positive_float, default=1e-3)
    gen.add_argument("--patience", type=_positive_int, default=None)
    gen.add_argument(
        "--augment",
        action="store_true",
        help="train on random same-function copies (tanh: sign flips, ReLU: rescaled neurons)",
    )
    gen.add_argument("--zoo-kind", choices=ZOO_KINDS, default="auto")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    gen.set_defaults(handler=_train_generalization)
    cls = tasks.add_parser("inr-classify", help="classify images from their SIRENs' weights")
    cls.add_argument("--inrs", required=True, help="INR folder (`weightspace inr fit` or SIRENs)")
    cls.add_argument("--model", required=True, choices=INR_MODELS)
    cls.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    cls.add_argument("--seed", type=int, default=0)
    cls.add_argument(
        "--epochs", type=_positive_int, default=None, help=f"default {inr_default['epochs']}"
    )
    cls.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"default {inr_default['batch_size']}",
    )
    cls.add_argument(
        "--lr", type=_positive_float, default=None, help=f"default {inr_default['lr']:g}"
    )
    cls.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        help="stop after this many epochs without a better validation accuracy (default: never)",
    )
    cls.add_argument(
        "--fourier-features",
        type=int,
        default=None,
        help="Gaussian Fourier features of each weight (NFNs); 0 for none (default: 64 for NFNs)",
    )
    cls.add_argument(
        "--sign-flips",
        choices=("auto", "on", "off"),
        default="auto",
        help="random hidden-neuron sign flips in training (default auto: on for the NFNs)",
    )
    cls.add_argument("--source", choices=INR_SOURCES, default="auto")
    cls.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    cls.set_defaults(handler=_train_inr_classify)

    ev = commands.add_parser("evaluate", help="score a trained run on a dataset's test split")
    ev.add_argument("--run", required=True, help="run folder written by `weightspace train`")
    # One data flag per kind of run; each picks the task's evaluate function.
    data = ev.add_mutually_exclusive_group(required=True)
    data.add_argument("--zoo", help="zoo folder, for generalization runs")
    data.add_argument("--inrs", help="INR folder, for inr-classify runs")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ev.set_defaults(handler=_evaluate)

    demo = commands.add_parser("demo", help="zoo → HNP NFN and StatNN → report, in minutes")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--networks", type=_positive_int, default=None, help="CNNs in the zoo")
    demo.add_argument("--epochs", type=_positive_int, default=None, help="predictor epochs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dataset", default=None, help="image dataset of the zoo (mnist)")
    demo.add_argument("--zoo-epochs", type=_positive_int, default=None, help="epochs per CNN")
    demo.add_argument("--batch-size", type=_positive_int, default=None, help="predictor batch")
    demo.add_argument("--limit-train", type=_positive_int, default=None, help="training images")
    demo.add_argument("--limit-test", type=_positive_int, default=None, help="test images")
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
    # Unset options keep ZooConfig's own defaults.
    config = ZooConfig(
        dataset=args.dataset,
        networks=args.networks,
        out=args.out,
        **{k: v for k, v in options.items() if v is not None},
    )
    path = generate_zoo(config)
    print(f"zoo: {path}")


def _inr_fit(args: argparse.Namespace) -> None:
    from weightspace.data.inr import InrConfig, fit_inrs

    options = {"seed": args.seed, "limit": args.limit, "augment": args.augment, "steps": args.steps}
    # Unset options keep InrConfig's own defaults.
    config = InrConfig(
        dataset=args.dataset, out=args.out, **{k: v for k, v in options.items() if v is not None}
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
    path = show_grid(data, images, args.out, n=args.n)
    print(f"written: {path}")


def _train_generalization(args: argparse.Namespace) -> None:
    from weightspace.tasks.generalization import GeneralizationConfig, run_generalization

    config = GeneralizationConfig(
        zoo=args.zoo,
        model=args.model,
        out=args.out,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        zoo_kind=args.zoo_kind,
        augment=args.augment,
        device=args.device,
    )
    metrics = run_generalization(config)
    _print_metrics(metrics, f"{args.out}/metrics.json")


def _train_inr_classify(args: argparse.Namespace) -> None:
    from weightspace.tasks.inr_classification import InrClassifyConfig, run_inr_classification

    options = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
    }
    # Unset options keep InrClassifyConfig's own (CPU-sized) defaults.
    explicit: dict[str, object] = {}
    if args.fourier_features is not None:
        if args.fourier_features < 0:
            raise SystemExit(f"--fourier-features must be >= 0, got {args.fourier_features}")
        explicit["fourier_features"] = args.fourier_features or None
    if args.sign_flips != "auto":
        explicit["sign_flips"] = args.sign_flips == "on"
    config = InrClassifyConfig(
        inrs=args.inrs,
        model=args.model,
        out=args.out,
        seed=args.seed,
        source=args.source,
        device=args.device,
        **{k: v for k, v in options.items() if v is not None},
        **explicit,  # type: ignore[arg-type]
    )
    metrics = run_inr_classification(config)
    _print_metrics(metrics, f"{args.out}/metrics.json")


def _evaluate(args: argparse.Namespace) -> None:
    from weightspace.tasks import generalization, inr_classification

    # Which data flag each task's runs take (config.json's "task" names the task).
    flags = {generalization.TASK: "--zoo", inr_classification.TASK: "--inrs"}
    flag = "--zoo" if args.zoo is not None else "--inrs"
    task = inr_classification.read_task(args.run)
    # No config.json: the task's own evaluate names what is missing.
    if task is not None:
        name = task.get("task")
        expected = flags.get(name) if isinstance(name, str) else None
        if expected is None:
            raise ValueError(
                f"{args.run}/config.json: task {name!r} is not one `weightspace evaluate` knows "
                f"(expected one of {tuple(flags)})"
            )
        if expected != flag:
            raise ValueError(
                f"{args.run!r} is a {name} run; evaluate it with {expected} DIR, not {flag}"
            )
    if args.zoo is not None:
        from weightspace.tasks.generalization import evaluate

        metrics = evaluate(args.run, args.zoo, device=args.device)
    else:
        from weightspace.tasks.inr_classification import evaluate_inrs

        metrics = evaluate_inrs(args.run, args.inrs, device=args.device)
    _print_metrics(metrics, f"{args.run}/metrics.json")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``weightspace`` command line; returns the exit status.

    Usage errors exit through argparse (status 2); a ``ValueError`` or a missing file raised
    by the command is printed as ``weightspace: error: …`` on stderr and returns 2.
    """
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"weightspace {args.command}: error: {message}", file=sys.stderr)
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
