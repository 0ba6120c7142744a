"""Forward+backward speed of weightspace's NF-Layers against the reference implementation.

The reference is ``nfn==0.1.2`` from PyPI (the ``bench`` extra; never a runtime dependency).
Both stacks run on identical inputs, interleaved repetition by repetition, and we report medians.

    python benchmarks/layers.py [--reps 30] [--threads N] [--device cpu|cuda] [--json out.json]

On CUDA every repetition is timed between two ``torch.cuda.synchronize`` calls, so a time is
the work's, not the launch's. Inputs are drawn on the CPU and copied, so both devices see the
same inputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.nn import HNPLinear, HNPPool, NPLinear, NPPool
from weightspace.train.loop import resolve_device

try:
    import nfn
    from nfn.common import WeightSpaceFeatures as RefFeatures
    from nfn.common import network_spec_from_wsfeat
except ImportError as exc:  # pragma: no cover - benchmark-only extra
    raise SystemExit("benchmarks/layers.py needs the reference: pip install -e '.[bench]'") from exc


@dataclass
class Case:
    name: str
    spec: NetworkSpec
    mode: str
    channels: tuple[int, ...]
    batch: int
    pool: bool


CASES = [
    Case(
        "Small CNN Zoo, HNP 1-16-16-5 + pool",
        NetworkSpec((1, 16, 16, 16, 10), ((3, 3),) * 3 + ((),)),
        "hnp",
        (1, 16, 16, 5),
        32,
        True,
    ),
    Case(
        "Small CNN Zoo, NP 1-16-16-5 + pool",
        NetworkSpec((1, 16, 16, 16, 10), ((3, 3),) * 3 + ((),)),
        "np",
        (1, 16, 16, 5),
        32,
        True,
    ),
    Case(
        "SIREN 2-32-32-1, NP 1-128-128-128-1",
        NetworkSpec((2, 32, 32, 1)),
        "np",
        (1, 128, 128, 128, 1),
        32,
        False,
    ),
    Case(
        "MLP 2-128-128-128-1, one NPLinear 32-32",
        NetworkSpec((2, 128, 128, 128, 1)),
        "np",
        (32, 32),
        16,
        False,
    ),
]


def ours(case: Case) -> nn.Module:
    layer = {"np": NPLinear, "hnp": HNPLinear}[case.mode]
    mods: list[nn.Module] = []
    for k, (c_in, c_out) in enumerate(zip(case.channels, case.channels[1:])):
        relu = k < len(case.channels) - 2 or case.pool
        # The same ReLU as a separate Activation("relu"), fused into the layer.
        mods.append(layer(case.spec, c_in, c_out, activation="relu" if relu else None))
    if case.pool:
        mods.append({"np": NPPool, "hnp": HNPPool}[case.mode](case.spec))
    return nn.Sequential(*mods)


def reference(case: Case, example: RefFeatures) -> nn.Module:
    ref_spec = network_spec_from_wsfeat(example)
    layer = {"np": nfn.layers.NPLinear, "hnp": nfn.layers.HNPLinear}[case.mode]
    mods: list[nn.Module] = []
    for k, (c_in, c_out) in enumerate(zip(case.channels, case.channels[1:])):
        mods.append(layer(ref_spec, c_in, c_out))
        if k < len(case.channels) - 2 or case.pool:
            mods.append(nfn.layers.TupleOp(nn.ReLU()))
    if case.pool:
        mods.append({"np": nfn.layers.NPPool, "hnp": nfn.layers.HNPPool}[case.mode](ref_spec))
    return nn.Sequential(*mods)


def _loss(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.sum()
    return sum(t.sum() for t in (*out.weights, *out.biases))


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(model: nn.Module, x, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    _loss(model(x)).backward()
    _sync(device)
    return time.perf_counter() - start


def run_case(case: Case, reps: int, warmup: int = 3, device: torch.device | None = None) -> dict:
    device = device if device is not None else torch.device("cpu")
    torch.manual_seed(0)
    c = case.channels[0]
    weights = [torch.randn(case.batch, c, *s).to(device) for s in case.spec.weight_shapes]
    biases = [torch.randn(case.batch, c, *s).to(device) for s in case.spec.bias_shapes]
    x_ours = WeightSpaceFeatures(weights, biases)
    x_ref = RefFeatures(weights, biases)
    m_ours, m_ref = ours(case).to(device), reference(case, x_ref).to(device)
    runs: dict[str, list[float]] = {"weightspace": [], "nfn": []}
    timers: list[tuple[str, Callable[[], float]]] = [
        ("weightspace", lambda: _time(m_ours, x_ours, device)),
        ("nfn", lambda: _time(m_ref, x_ref, device)),
    ]
    for r in range(warmup + reps):
        order = timers if r % 2 == 0 else timers[::-1]
        for name, fn in order:
            t = fn()
            if r >= warmup:
                runs[name].append(t)
    ours_ms = 1e3 * statistics.median(runs["weightspace"])
    ref_ms = 1e3 * statistics.median(runs["nfn"])
    return {
        "case": case.name,
        "weightspace_ms": round(ours_ms, 3),
        "nfn_ms": round(ref_ms, 3),
        "speedup": round(ref_ms / ours_ms, 2),
        "params_weightspace": sum(p.numel() for p in m_ours.parameters()),
        "params_nfn": sum(p.numel() for p in m_ref.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    print(f"# forward+backward, median of {args.reps} interleaved reps; {machine}")
    print("| case | weightspace (ms) | nfn 0.1.2 (ms) | speed-up |")
    print("|---|---|---|---|")
    results = []
    for case in CASES:
        res = run_case(case, args.reps, device=device)
        results.append(res)
        print(
            f"| {res['case']} | {res['weightspace_ms']:.2f} | {res['nfn_ms']:.2f} | {res['speedup']:.2f}x |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            doc = {"machine": machine, "device": str(device), "reps": args.reps, "results": results}
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
