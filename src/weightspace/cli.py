"""The ``weightspace`` command line: a thin layer over the library's task functions.

::

    weightspace zoo --dataset NAME --networks N --out DIR [--seed S] [--epochs E]
    weightspace train generalization --zoo DIR --model hnp|np|statnet|mlp --out RUN [--seed S]
                                     [--epochs E]
    weightspace evaluate --run RUN --zoo DIR
    weightspace demo [--out DIR] [--networks N] [--epochs E] [--dataset NAME] [--zoo-epochs E]

Each command parses its arguments into a config and calls one function
(:func:`~weightspace.data.zoo.generate_zoo`, :func:`~weightspace.tasks.run_generalization`,
:func:`~weightspace.tasks.evaluate`, :func:`~weightspace.tasks.demo.run_demo`). A ``ValueError``
(bad input, a missing or foreign folder, a config that differs from the run being resumed) is
printed as one line on stderr and the exit status is 2, as for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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
    gen.add_argument("--zoo-kind", choices=ZOO_KINDS, default="auto")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    gen.set_defaults(handler=_train_generalization)

    ev = commands.add_parser("evaluate", help="score a trained run on a dataset's test split")
    ev.add_argument("--run", required=True, help="run folder written by `weightspace train`")
    # One data flag per kind of run; each picks the task's evaluate function.
    data = ev.add_mutually_exclusive_group(required=True)
    data.add_argument("--zoo", help="zoo folder, for generalization runs")
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
        device=args.device,
    )
    metrics = run_generalization(config)
    _print_metrics(metrics, f"{args.out}/metrics.json")


def _evaluate(args: argparse.Namespace) -> None:
    from weightspace.tasks.generalization import evaluate

    metrics = evaluate(args.run, args.zoo, device=args.device)
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
    from weightspace.train.loop import jsonable

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
