"""Zoo training throughput: the batched zoo trainer against a plain per-network loop.

Both train the same networks (hyperparameters sampled as in ``generate_zoo``: optimizer,
learning rate, L2, dropout, init, activation) from the same initial weights on the same
minibatches for the same number of steps:

- batched: one :class:`~weightspace.train.batched.BatchedTrainer` for the whole chunk, as
  :func:`~weightspace.data.zoo.zoo_trainer` builds it (grouped convolutions, vectorised
  optimizers: :class:`~weightspace.train.optim.PerNetworkOptimizer`);
- loop: one ``nn.Module`` per network (with ``nn.Dropout`` after each activation) and its own
  ``torch.optim`` optimizer, trained one network after the other.

Repetitions alternate between the two; we report medians of networks trained per second
(training only; evaluation is left out of both). Like ``generate_zoo``, the benchmark first
calls ``retain_freed_memory`` (glibc keeps freed memory for reuse; it applies to both sides);
``--no-retain-memory`` leaves malloc at its defaults.

    python benchmarks/zoo.py [--datasets digits mnist] [--networks 64] [--epochs 1]
        [--limit-train 1024] [--reps 5] [--threads 1] [--no-retain-memory] [--json out.json]
        [--device cpu|cuda] [--mask-generator cpu|device]

On CUDA (``--device cuda``) both sides train there, each repetition timed between
``torch.cuda.synchronize`` calls. ``--mask-generator`` says where the batched side draws its
dropout masks: ``cpu`` (what ``generate_zoo`` does on every device: the same masks everywhere,
drawn on the CPU and copied each step) or ``device`` (a generator on the training device: no
copy, but masks that depend on the device). Run both on a GPU to see whether the CPU draw
bounds its throughput.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time

import torch
from _machine import machine_info, machine_line, sync
from torch import nn
from torch.nn import functional as F

from weightspace.data.images import load_images
from weightspace.data.zoo import (
    ADAM_BETAS,
    ADAM_EPS,
    RMSPROP_ALPHA,
    RMSPROP_EPS,
    Hyperparameters,
    _make_network,
    gather_batches,
    zoo_trainer,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.train.batched import retain_freed_memory
from weightspace.train.loop import resolve_device


def loop_module(hp: Hyperparameters) -> nn.Sequential:
    """The zoo network with dropout after each hidden activation, as the batched trainer has."""
    act = nn.ReLU if hp.activation == "relu" else nn.Tanh
    layers: list[nn.Module] = []
    for c_in in (1, 16, 16):
        layers += [nn.Conv2d(c_in, 16, 3, stride=2, padding=1), act(), nn.Dropout(hp.dropout)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
    return nn.Sequential(*layers)


def loop_optimizer(net: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": 2 * hp.l2}, {"params": biases, "weight_decay": 0}]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.learning_rate)
    if hp.optimizer == "adam":
        return torch.optim.Adam(groups, lr=hp.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS)
    return torch.optim.RMSprop(groups, lr=hp.learning_rate, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS)


def run_batched(nets, x, y, idx, mask_generator: str = "cpu") -> float:
    """Seconds to train ``nets`` batched on ``x``'s device; masks from a generator on the CPU
    or on that device (``mask_generator``)."""
    device = x.device
    stacked = [torch.stack([n.init[j] for n in nets]).to(device) for j in range(len(nets[0].init))]
    where = device if mask_generator == "device" else torch.device("cpu")
    generator = torch.Generator(device=where).manual_seed(0)
    trainer = zoo_trainer(stacked, [n.hp for n in nets], generator=generator, device=device)
    sync(device)
    start = time.perf_counter()
    for s in range(idx.shape[1]):  # as generate_zoo does
        trainer.step(gather_batches(x, idx[:, s]), y[idx[:, s]])
    sync(device)
    return time.perf_counter() - start


def run_loop(nets, x, y, idx) -> float:
    """Seconds to train ``nets`` one after the other on ``x``'s device."""
    modules = []
    for n in nets:
        module = loop_module(n.hp)
        WeightSpaceFeatures.from_tensors([t[None, None] for t in n.init]).load_into(module)
        modules.append(module.train().to(x.device))
    sync(x.device)
    start = time.perf_counter()
    for b, (n, module) in enumerate(zip(nets, modules)):
        opt = loop_optimizer(module, n.hp)
        for s in range(idx.shape[1]):
            batch = idx[b, s]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(module(x[batch]), y[batch]).backward()
            opt.step()
    sync(x.device)
    return time.perf_counter() - start


def bench(dataset: str, args: argparse.Namespace) -> dict:
    limit = args.limit_train if dataset != "digits" else None
    data = load_images(dataset, limit_train=limit)
    device = torch.device(args.device)
    x, y = data.train_x.to(device), data.train_y.to(device)
    n_train = x.shape[0]
    nets = [_make_network(args.seed, i, n_train) for i in range(args.networks)]
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    idx = torch.stack([n.stream.take(steps * args.batch_size) for n in nets])
    idx = idx.view(args.networks, steps, args.batch_size).to(device)
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    # Warm-up, so that one-time costs (oneDNN or cuDNN kernels for these shapes, the heap,
    # threads) are left out of both sides: two steps of the whole chunk, two steps of one
    # looped network.
    run_batched(nets, x, y, idx[:, :2], args.mask_generator)
    run_loop(nets[:1], x, y, idx[:1, :2])
    for _ in range(args.reps):
        times["batched"].append(run_batched(nets, x, y, idx, args.mask_generator))
        times["loop"].append(run_loop(nets, x, y, idx))
    batched, loop = statistics.median(times["batched"]), statistics.median(times["loop"])
    return {
        "dataset": dataset,
        "image_size": list(data.train_x.shape[2:]),
        "train_images": n_train,
        "networks": args.networks,
        "steps": steps,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "mask_generator": args.mask_generator,
        "batched_s": times["batched"],
        "loop_s": times["loop"],
        "batched_networks_per_s": args.networks / batched,
        "loop_networks_per_s": args.networks / loop,
        "speedup": loop / batched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"])
    parser.add_argument("--networks", type=int, default=64, help="networks (one chunk)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--limit-train", type=int, default=1024, help="train images of 28x28 datasets"
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-retain-memory", action="store_true", help="leave glibc malloc at its defaults"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--mask-generator",
        choices=["cpu", "device"],
        default="cpu",
        help="where the batched side draws its dropout masks (default: cpu, as generate_zoo)",
    )
    args = parser.parse_args()
    args.device = str(resolve_device(args.device))
    torch.set_num_threads(args.threads)
    retained = False if args.no_retain_memory else retain_freed_memory()
    print("# command: " + shlex.join([sys.executable, *sys.argv]))
    machine = machine_info(args.device)
    print(
        f"# {args.networks} networks x {args.epochs} epoch(s), batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.reps} interleaved reps, masks drawn on "
        f"{args.mask_generator}, freed memory retained: {retained}; {machine_line(machine)}"
    )
    print(
        "| dataset | train images | steps | batched (networks/s) | loop (networks/s) | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    results = []
    for dataset in args.datasets:
        r = bench(dataset, args)
        results.append(r)
        size = "x".join(map(str, r["image_size"]))
        print(
            f"| {dataset} ({size}) | {r['train_images']} | {r['steps']} | "
            f"{r['batched_networks_per_s']:.2f} | {r['loop_networks_per_s']:.2f} | "
            f"{r['speedup']:.1f}x |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            summary = {"machine": machine, "retained_memory": retained, "args": vars(args)}
            json.dump({**summary, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
