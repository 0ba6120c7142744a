"""SIREN fitting throughput: batched (weightspace.train.siren) against a per-SIREN loop.

Both fit SIRENs 2-32-32-1 (ω0 = 30) to real MNIST images (the first training images of
``load_images("mnist")``) from the same initial weights (:func:`init_sirens` from the same
seeds), for the same number of full-image Adam steps with the same learning rate:

- batched: :func:`~weightspace.train.siren.fit_sirens`, ``--batch`` SIRENs at once with one Adam
  over the stacked weight tensors and closed-form gradients;
- loop: one :func:`~weightspace.data.inr.siren_module` (``nn.Sequential`` of ``nn.Linear`` and
  ``Sine``) per image with its own ``torch.optim.Adam`` (default settings) and autograd, fitted
  one after the other.

Rounds alternate between the two; we report medians of SIRENs fitted per second. The loop fits
fewer SIRENs per round (it is slower; the rate is per SIREN either way). We also report the mean
PSNR of the batched fits (this is how the default steps and learning rate were chosen) and the
largest weight difference between loop and batched fits of the same images and seeds (float32
rounding, amplified over hundreds of steps: ~1e-4 after 500; the tests check 1e-5 after a few).

The batched side runs its elementwise kernels compiled (``weightspace.train.fused``); with
``WEIGHTSPACE_COMPILE=0`` it runs them eagerly. A warm-up before the rounds takes the one-time
compile, and its time is printed.

Both run on ``--threads`` torch threads (1 by default: on a shared machine, intra-op threads
mostly wait on each other). The default run takes one to two minutes on 2 cores.

    python benchmarks/inr.py [--images 64] [--loop-images 16] [--steps 500] [--lr 1e-3]
        [--batch 32] [--rounds 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time

import torch
from _machine import machine_info, machine_line

from weightspace.data.images import load_images
from weightspace.data.inr import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    pixel_grid,
    psnr,
    render,
    siren_module,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.train.fused import COMPILE_ENV, compile_enabled
from weightspace.train.siren import fit_sirens


def fit_loop(images: torch.Tensor, seeds: list[int], steps: int, lr: float) -> WeightSpaceFeatures:
    """The plain way: one module and one optimizer per image, autograd, one image at a time."""
    H, W = images.shape[2:]
    grid = pixel_grid(H, W)
    modules = []
    for seed, image in zip(seeds, images):
        module = siren_module(generator=torch.Generator().manual_seed(seed))
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        target = image.reshape(H * W, 1)
        for _ in range(steps):
            loss = (module(grid) - target).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        modules.append(module)
    return WeightSpaceFeatures.from_modules(modules)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64, help="SIRENs per batched round")
    parser.add_argument("--loop-images", type=int, default=16, help="SIRENs per loop round")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--batch", type=int, default=32, help="batch_networks of fit_sirens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = max(args.images, args.loop_images)
    images = load_images("mnist", limit_train=n).train_x
    seeds = list(range(n))
    command = "python benchmarks/inr.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    print(f"$ {command}".rstrip())
    print(
        f"# {machine_line(machine)}; MNIST 28x28, {args.steps} full-image Adam steps, lr {args.lr:g}, "
        f"{args.rounds} interleaved rounds",
        flush=True,
    )
    # Warm-up, outside the rounds: the batched side compiles its fused kernels on its first
    # call in a process (weightspace.train.fused; reported, not hidden), and both sides' first
    # calls set up threads and allocator.
    start = time.perf_counter()
    warm = min(args.batch, args.images)  # the rounds' shapes: nothing compiles again in them
    fit_sirens(images[:warm], seeds[:warm], steps=2, lr=args.lr, batch_networks=args.batch)
    warmup_batched = time.perf_counter() - start
    fit_loop(images[:1], seeds[:1], 2, args.lr)
    what = "compiling its kernels" if compile_enabled() else f"{COMPILE_ENV}=0: nothing compiled"
    print(f"  warm-up of the batched side ({what}): {warmup_batched:.1f} s")
    rates: dict[str, list[float]] = {"batched": [], "loop": []}
    batched = loop = None
    for r in range(args.rounds):
        runs = [("batched", args.images), ("loop", args.loop_images)]
        for name, count in runs if r % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            if name == "batched":
                batched, scores = fit_sirens(
                    images[: args.images],
                    seeds[: args.images],
                    steps=args.steps,
                    lr=args.lr,
                    batch_networks=args.batch,
                )
            else:
                loop = fit_loop(images[:count], seeds[:count], args.steps, args.lr)
            rates[name].append(count / (time.perf_counter() - start))
            print(f"  round {r + 1} {name}: {rates[name][-1]:.2f} SIRENs/s", flush=True)
    assert batched is not None and loop is not None
    k = min(args.images, args.loop_images)
    diff = max((a[:k] - b[:k]).abs().max().item() for a, b in zip(batched.tensors, loop.tensors))
    with torch.no_grad():
        loop_psnr = psnr(render(loop, *images.shape[2:]), images[: args.loop_images])
    result = {
        "command": command,
        "machine": machine,
        "steps": args.steps,
        "lr": args.lr,
        "batch_networks": args.batch,
        "batched_sirens_per_s": statistics.median(rates["batched"]),
        "loop_sirens_per_s": statistics.median(rates["loop"]),
        "rounds": rates,
        "mean_psnr_batched": float(scores.mean()),
        "min_psnr_batched": float(scores.min()),
        "mean_psnr_loop": float(loop_psnr.mean()),
        "max_weight_diff_loop_vs_batched": diff,
        "images": args.images,
        "warmup_batched_s": warmup_batched,
        "compile": compile_enabled(),
    }
    result["speedup"] = result["batched_sirens_per_s"] / result["loop_sirens_per_s"]
    # Each round times both back to back: their ratio is robust to slow drifts in machine load.
    per_round = [b / lp for b, lp in zip(rates["batched"], rates["loop"])]
    result["speedup_per_round"] = per_round
    print(
        f"# mean PSNR of the {args.images} batched fits: {result['mean_psnr_batched']:.2f} dB "
        f"(worst {result['min_psnr_batched']:.2f} dB); loop fits: {result['mean_psnr_loop']:.2f} "
        f"dB; max |weight difference| loop vs batched (same seeds): {diff:.2e}"
    )
    print(f"# speed-up per round: {', '.join(f'{r:.1f}x' for r in per_round)}")
    print("| machine | steps | batched (SIRENs/s) | per-SIREN loop (SIRENs/s) | speed-up |")
    print("|---|---|---|---|---|")
    print(
        f"| {machine_line(machine)} | {args.steps} | {result['batched_sirens_per_s']:.2f} | "
        f"{result['loop_sirens_per_s']:.2f} | {result['speedup']:.1f}x |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
