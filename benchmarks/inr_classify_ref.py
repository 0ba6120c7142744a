"""INR classification side by side: the reference implementation's NFN_NP classifier and ours.

The reference is the paper's MNIST INR classifier, assembled from the public layers of
``nfn==0.1.2`` (the ``bench`` extra; never a runtime dependency): 128 Gaussian Fourier features
(scale 3) of the *raw* SIREN weights, a sinusoidal IO encoding, three NP layers of C channels
(ReLU, channel dropout 0.1 after each), the NP pool, and a 1000-1000 MLP head with dropout 0.1.
C is our width (``--channels``, by default the width ``weightspace train inr-classify`` uses).

Ours is one of two (``--ours``):

- ``default`` (the default): the classifier ``weightspace train inr-classify --model np`` builds
  with its default settings at width C. It differs from the reference in its recipe, not its
  layers: every weight and bias tensor standardised by training-split statistics, 64 Gaussian
  Fourier features (scale 10) of the standardised weights, no channel dropout, a 256-unit head
  with dropout 0.2. This answers "is weightspace's classifier as accurate and how much faster".
- ``paper``: :class:`weightspace.models.InvariantNFN` at the reference's configuration, layer for
  layer. This answers "are our layers faster on the same model". Each side keeps its own
  library's details: the Fourier matrices are different random draws, and the IO encodings differ
  in size (ours gives inputs and outputs 13 channels each, 282 into the first NP layer; the
  reference sums them with a layer encoding into 13, 269 into the first NP layer).

Both train on the same SIRENs with the same budget: Adam, the same learning rate, batch size,
number of epochs and seeded shuffles (one permutation per epoch, shared), cross-entropy.
``--augment`` says which side sees random function-preserving changes of its training batches:
``recipe`` (the default) gives each side its own recipe's, so ``--ours default`` trains with the
task's default augmentation (random hidden-neuron sign flips, exact for SIRENs) and the
reference, like ``--ours paper``, with none (the paper augments with extra fits of each image
instead); ``none`` gives neither any, ``both`` both the task's. An augmentation's time counts in
its side's epoch. Epochs are interleaved, one of each in turn (the order alternates), so a busy
machine slows both alike. After every epoch each model is scored on the test SIRENs and on the
validation SIRENs (eval mode, no grad). We report the final and the best test accuracy, the test
accuracy at the best validation epoch (the one ``weightspace train`` would keep), and the median
training time per epoch.

    python benchmarks/inr_classify_ref.py --inrs DIR [--ours default|paper]
        [--augment recipe|none|both] [--epochs 5]
        [--channels 32] [--lr 1e-3] [--batch-size 32] [--seed 0] [--threads 1] [--device cpu]
        [--no-retain-memory] [--json out.json]

On the CPU it first calls ``retain_freed_memory`` (glibc keeps freed blocks for reuse instead
of handing them back; process-wide, so both sides get it), as ``weightspace train`` and
``benchmarks/layers.py`` do; ``--no-retain-memory`` leaves glibc's default.

``DIR`` is a folder written by ``weightspace inr fit`` (its train and test splits are used).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import statistics
import sys
import time
from collections.abc import Sequence

import torch
from _machine import machine_info, machine_line, sync
from torch import Tensor, nn

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.inr import InrDataset, load_inrs
from weightspace.io import write_json
from weightspace.models import InvariantNFN
from weightspace.tasks.inputs import Augmentation
from weightspace.tasks.inr_classification import InrClassification, InrClassifyConfig
from weightspace.train.batched import retain_freed_memory

try:
    import nfn
    from nfn.common import WeightSpaceFeatures as RefFeatures
    from nfn.common import network_spec_from_wsfeat
except ImportError as exc:  # pragma: no cover - benchmark-only extra
    raise SystemExit(
        "benchmarks/inr_classify_ref.py needs the reference: pip install -e '.[bench]'"
    ) from exc

#: The paper's MNIST configuration: the reference's, and ours with ``--ours paper``.
FOURIER_FEATURES = 128
FOURIER_SCALE = 3.0
CHANNEL_DROPOUT = 0.1
HEAD_HIDDEN = (1000, 1000)
HEAD_DROPOUT = 0.1
NP_LAYERS = 3

MODELS = ("weightspace", "nfn")
#: What our side is: the task's default classifier, or the reference's configuration.
OURS = ("default", "paper")


def task_defaults(channels: int | None = None) -> InrClassifyConfig:
    """The settings ``weightspace train inr-classify --model np`` uses when given no options
    (with ``channels``: and ``--hidden-channels C,C,C``)."""
    config = InrClassifyConfig(inrs="-", model="np", out="-")
    if channels is None:
        return config
    return dataclasses.replace(config, hidden_channels=(channels,) * len(config.hidden_channels))


#: Our default width: the NF-Layer channels of the task's default classifier.
DEFAULT_CHANNELS = task_defaults().hidden_channels[0]
#: Who trains on augmented batches: each side as its recipe says, neither, or both.
AUGMENT = ("recipe", "none", "both")


def default_task(
    spec: NetworkSpec, channels: int = DEFAULT_CHANNELS, num_classes: int = 10
) -> InrClassification:
    """The task ``weightspace train inr-classify --model np`` runs with its default settings on
    SIRENs of ``spec`` with ``num_classes`` classes, at ``channels`` per NF-Layer: its
    ``build``, ``prepare`` and ``augmentation`` are our default side's model, set-up and
    augmentation."""
    settings = task_defaults(channels).settings()
    return InrClassification(settings | {"spec": spec.to_dict(), "num_classes": num_classes})


def task_augmentation(spec: NetworkSpec) -> list[Augmentation]:
    """The training augmentations of ``weightspace train inr-classify --model np`` by default."""
    return [a for a in default_task(spec).augmentation() if a.active]


def augmentations(spec: NetworkSpec, recipe: str, augment: str) -> dict[str, list[Augmentation]]:
    """Per model of :data:`MODELS`, the augmentations its training batches get."""
    if augment not in AUGMENT:
        raise ValueError(f"augmentations: unknown augment {augment!r}; expected one of {AUGMENT}")
    task = task_augmentation(spec)
    if augment == "both":
        return {name: task for name in MODELS}
    ours_too = augment == "recipe" and recipe == "default"
    return {"weightspace": task if ours_too else [], "nfn": []}


def to_reference(x: WeightSpaceFeatures) -> RefFeatures:
    """The reference's features on the same tensors (no copy): W_i ``(B, C, n_i, n_{i-1})``."""
    return RefFeatures(list(x.weights), list(x.biases))


class ReferenceClassifier(nn.Module):
    """The reference's NFN_NP INR classifier, built only from ``nfn``'s public layers.

    Takes our :class:`WeightSpaceFeatures` and hands the same tensors to ``nfn`` (a tuple of
    views, free), so both models run in one training loop and one test kit.

    Parameters
    ----------
    spec:
        The weight space of the SIRENs.
    channels:
        Channels of each of the three NP layers.
    num_classes:
        Output logits.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: ``(B, num_classes)``
    """

    def __init__(
        self, spec: NetworkSpec, channels: int = DEFAULT_CHANNELS, num_classes: int = 10
    ) -> None:
        super().__init__()
        example = RefFeatures(
            [torch.zeros(1, 1, *s) for s in spec.weight_shapes],
            [torch.zeros(1, 1, *s) for s in spec.bias_shapes],
        )
        ref_spec = network_spec_from_wsfeat(example)
        layers = nfn.layers
        fourier = layers.GaussianFourierFeatureTransform(
            ref_spec, 1, mapping_size=FOURIER_FEATURES, scale=FOURIER_SCALE
        )
        io = layers.IOSinusoidalEncoding(ref_spec)
        mods: list[nn.Module] = [fourier, io]
        width = io.num_out_chan(fourier.out_channels)
        for _ in range(NP_LAYERS):
            mods += [
                layers.NPLinear(ref_spec, width, channels),
                layers.TupleOp(nn.ReLU()),
                layers.ChannelDropout(CHANNEL_DROPOUT),
            ]
            width = channels
        # NPPool gives (B, C, pooled per channel); the head gets it flat.
        mods += [layers.NPPool(ref_spec), nn.Flatten(start_dim=1)]
        pooled = channels * layers.NPPool.get_num_outs(ref_spec)
        head: list[nn.Module] = []
        for h in HEAD_HIDDEN:
            head += [nn.Linear(pooled, h), nn.ReLU(), nn.Dropout(HEAD_DROPOUT)]
            pooled = h
        head.append(nn.Linear(pooled, num_classes))
        self.net = nn.Sequential(*mods, *head)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        return self.net(to_reference(x))


def ours(
    spec: NetworkSpec,
    channels: int = DEFAULT_CHANNELS,
    num_classes: int = 10,
    recipe: str = "default",
) -> nn.Module:
    """Our classifier with ``channels`` per NP layer, as ``recipe`` (one of :data:`OURS`) says.

    ``"paper"``: the reference's configuration, :class:`InvariantNFN` as a user builds it:
    ``InvariantNFN(spec, "np", (C, C, C), head_hidden=(1000, 1000), out_features=num_classes,
    io_encoding="sinusoidal", fourier_features=128, fourier_scale=3.0, dropout=0.1,
    channel_dropout=0.1)``; the ReLU is fused into each NP layer.

    ``"default"``: what ``weightspace train inr-classify --model np`` builds with its default
    settings and ``--hidden-channels C,C,C`` (:func:`default_task`): a
    :class:`~weightspace.tasks.inputs.Standardized` NFN; give it the training statistics
    before training with the task's ``prepare``, as :func:`compare` does.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: ``(B, num_classes)``
    """
    if recipe == "default":
        return default_task(spec, channels, num_classes).build(spec)
    if recipe != "paper":
        raise ValueError(f"ours: unknown recipe {recipe!r}; expected one of {OURS}")
    return InvariantNFN(
        spec,
        "np",
        hidden_channels=(channels,) * NP_LAYERS,
        head_hidden=HEAD_HIDDEN,
        out_features=num_classes,
        io_encoding="sinusoidal",
        fourier_features=FOURIER_FEATURES,
        fourier_scale=FOURIER_SCALE,
        dropout=HEAD_DROPOUT,
        channel_dropout=CHANNEL_DROPOUT,
    )


def build(
    name: str,
    spec: NetworkSpec,
    channels: int,
    num_classes: int,
    seed: int,
    recipe: str = "default",
) -> nn.Module:
    """Model ``name`` (one of :data:`MODELS`), initialised from ``seed``; ``recipe`` is our
    side's (:func:`ours`)."""
    torch.manual_seed(seed)
    if name == "weightspace":
        return ours(spec, channels, num_classes, recipe)
    if name == "nfn":
        return ReferenceClassifier(spec, channels, num_classes)
    raise ValueError(f"build: unknown model {name!r}; expected one of {MODELS}")


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The shuffle of epoch ``epoch``: the same permutation of ``range(n)`` for both models."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1_000_003 * seed + epoch))


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: InrDataset,
    order: Tensor,
    batch_size: int,
    device: torch.device,
    augments: Sequence[Augmentation] = (),
) -> tuple[float, float]:
    """One pass over ``data`` in ``order``, each batch through ``augments``; returns (seconds,
    mean training loss)."""
    model.train()
    total, count = torch.zeros((), device=device), 0
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size].to(data.labels.device)
        x, y = data.features[idx], data.labels[idx]
        for augment in augments:
            x = augment(x, None)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
        count += len(idx)
    sync(device)
    return time.perf_counter() - start, float(total) / max(count, 1)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: InrDataset, batch_size: int = 256) -> float:
    """Fraction of ``data`` classified correctly, in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.features[i : i + batch_size], data.labels[i : i + batch_size]
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / len(data)


def _to(data: InrDataset, device: torch.device) -> InrDataset:
    return InrDataset(
        data.spec,
        data.features.to(device),
        data.labels.to(device),
        data.split.to(device),
        data.metadata,
        data.info,
    )


def compare(
    train: InrDataset,
    test: InrDataset,
    *,
    epochs: int = 5,
    channels: int = DEFAULT_CHANNELS,
    recipe: str = "default",
    augment: str = "recipe",
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    val: InrDataset | None = None,
) -> dict:
    """Train both models, interleaved epoch by epoch; returns per-model results.

    With ``val`` (a validation split), each model is also scored on it after every epoch, and
    its *selected* test accuracy is the one at its best validation epoch (the first, on ties),
    the epoch ``weightspace train`` would keep.

    ``recipe`` is our side's (:func:`ours`), ``augment`` who trains on augmented batches
    (:func:`augmentations`). Each model's dropout and augmentation draws are seeded per epoch,
    so they do not depend on the interleaving.
    """
    device = torch.device(device)
    train, test = _to(train, device), _to(test, device)
    val = None if val is None or not len(val) else _to(val, device)
    num_classes = max(train.num_classes, test.num_classes)
    models = {
        name: build(name, train.spec, channels, num_classes, seed, recipe).to(device)
        for name in MODELS
    }
    if recipe == "default":  # the task's own set-up: standardisation by training statistics
        default_task(train.spec, channels, num_classes).prepare(models["weightspace"], train)
    augments = augmentations(train.spec, recipe, augment)
    optims = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in models.items()}
    history: dict[str, list[dict]] = {name: [] for name in MODELS}
    for epoch in range(epochs):
        order = epoch_order(len(train), seed, epoch)
        names = MODELS if epoch % 2 == 0 else MODELS[::-1]
        for k, name in enumerate(names):
            torch.manual_seed(1_000_003 * seed + 7919 * epoch + MODELS.index(name) + 1)
            seconds, loss = train_epoch(
                models[name], optims[name], train, order, batch_size, device, augments[name]
            )
            start = time.perf_counter()
            acc = evaluate_accuracy(models[name], test)
            val_acc = math.nan if val is None else evaluate_accuracy(models[name], val)
            row = {
                "epoch": epoch + 1,
                "train_s": seconds,
                "eval_s": time.perf_counter() - start,
                "train_loss": loss,
                "test_accuracy": acc,
                "val_accuracy": val_acc,
                "order": k,
            }
            history[name].append(row)
        if progress:
            line = " | ".join(
                f"{n}: {history[n][-1]['train_s']:.2f} s, loss {history[n][-1]['train_loss']:.3f},"
                f" val {100 * history[n][-1]['val_accuracy']:.1f} %,"
                f" test {100 * history[n][-1]['test_accuracy']:.1f} %"
                for n in MODELS
            )
            print(f"# epoch {epoch + 1}/{epochs}: {line}", flush=True)
    results = {}
    for name, model in models.items():
        rows = history[name]
        accs = [r["test_accuracy"] for r in rows]
        vals = [r["val_accuracy"] for r in rows]
        chosen = None if val is None or not rows else max(range(len(rows)), key=vals.__getitem__)
        results[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "final_test_accuracy": accs[-1] if accs else math.nan,
            "best_test_accuracy": max(accs) if accs else math.nan,
            "selected_epoch": None if chosen is None else chosen + 1,
            "selected_test_accuracy": math.nan if chosen is None else accs[chosen],
            "median_epoch_s": statistics.median(r["train_s"] for r in rows) if rows else math.nan,
            "epochs": rows,
        }
    ours_s, ref_s = results["weightspace"]["median_epoch_s"], results["nfn"]["median_epoch_s"]
    return {
        "ours": recipe,
        "augmented": {name: [type(a).__name__ for a in augs] for name, augs in augments.items()},
        "models": results,
        "speed_ratio": ref_s / ours_s if ours_s > 0 else math.nan,
    }


def table(result: dict) -> list[str]:
    """Markdown rows: one per model, then the speed ratio."""
    rows = [
        "| model | parameters | augmentation | final test acc | best test acc "
        "| test acc at best val (epoch) | median s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    augmented = result.get("augmented", {})
    recipe = result.get("ours", "paper")
    labels = {
        "weightspace": f"weightspace ({recipe})",
        "nfn": f"nfn {getattr(nfn, '__version__', '0.1.2')} (paper)",
    }
    for name in MODELS:
        r = result["models"][name]
        epoch = r.get("selected_epoch")
        selected = "–" if epoch is None else f"{100 * r['selected_test_accuracy']:.1f} % ({epoch})"
        rows.append(
            f"| {labels[name]} | {r['params']:,} | {', '.join(augmented.get(name, [])) or 'none'} "
            f"| {100 * r['final_test_accuracy']:.1f} % "
            f"| {100 * r['best_test_accuracy']:.1f} % | {selected} | {r['median_epoch_s']:.2f} |"
        )
    rows.append(f"\nspeed ratio (nfn / weightspace, time per epoch): {result['speed_ratio']:.2f}x")
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inrs", required=True, help="folder written by `weightspace inr fit`")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--ours",
        choices=OURS,
        default="default",
        help="our side: the task's default classifier, or the reference's configuration",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENT,
        default="recipe",
        help="who trains on augmented batches: each side as its recipe says, neither, or both",
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=DEFAULT_CHANNELS,
        help=f"channels of each NP layer, both sides (default: ours, {DEFAULT_CHANNELS})",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--no-retain-memory", action="store_true", help="leave glibc's malloc at its default"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.channels < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--epochs, --channels, --batch-size and --threads must be positive")
    torch.set_num_threads(args.threads)
    retained = False
    if not args.no_retain_memory and torch.device(args.device).type == "cpu":
        retained = retain_freed_memory()
    command = "python benchmarks/inr_classify_ref.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    machine = machine_info(args.device, nfn=getattr(nfn, "__version__", "0.1.2"))
    machine["retain_freed_memory"] = retained
    print(f"$ {command}")
    print(f"# {machine_line(machine)}; retain_freed_memory: {retained}", flush=True)
    data = load_inrs(args.inrs)
    train, val, test = data.part("train"), data.part("val"), data.part("test")
    if not len(train) or not len(test):
        raise SystemExit(f"{args.inrs}: need train and test INRs, got {len(train)} and {len(test)}")
    print(
        f"# {args.inrs}: {len(train)} train, {len(val)} validation and {len(test)} test SIRENs",
        flush=True,
    )
    result = compare(
        train,
        test,
        epochs=args.epochs,
        channels=args.channels,
        recipe=args.ours,
        augment=args.augment,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        val=val,
    )
    print("\n".join(["", *table(result)]))
    result = {
        "command": command,
        "machine": machine,
        "args": vars(args),
        "data": {
            "inrs": args.inrs,
            "dataset": data.info.get("dataset"),
            "train": len(train),
            "val": len(val),
            "test": len(test),
        },
        **result,
    }
    if args.json:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
