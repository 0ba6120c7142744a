"""Forward+backward speed of weightspace's NF-Layers against the reference implementation.

The reference is ``nfn==0.1.2`` from PyPI (the ``bench`` extra; never a runtime dependency).
Both stacks run on identical inputs, interleaved repetition by repetition, and we report medians.

    python benchmarks/layers.py [--reps 30] [--threads N] [--device cpu|cuda]
                                [--dtype float32|bfloat16] [--no-retain-memory] [--json out.json]

Per case it reports forward + backward (loss = sum of all outputs) and inference (forward under
``no_grad``) for both sides, the matrix-product FLOPs our stack performs in forward + backward
(counted by ``torch.utils.flop_counter``), and what share of the machine's matmul throughput that
is. The peak is measured in the same run, in the same dtype and on the same device: the median
of a 2048 x 2048 x 2048 product, before the first case and after the last (the higher is used).

On CUDA every repetition is timed between two ``torch.cuda.synchronize`` calls, so a time is
the work's, not the launch's. Inputs are drawn on the CPU and copied, so both devices see the
same inputs. ``--dtype bfloat16`` runs both stacks and their inputs in bfloat16 (a lever of the
speed issue; the float32 figures are the ones to compare with the reference's default). On the
CPU the benchmark first calls ``retain_freed_memory`` (glibc reuses freed blocks instead of
handing them back; process-wide, so it applies to both sides), as the zoo benchmark does and as
``weightspace train`` does; ``--no-retain-memory`` leaves glibc's default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from _machine import machine_info, machine_line, sync
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.nn import HNPLinear, HNPPool, NPLinear, NPPool
from weightspace.train.batched import retain_freed_memory
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


def _time(model: nn.Module, x, device: torch.device) -> float:
    """Seconds of one forward + backward."""
    sync(device)
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    _loss(model(x)).backward()
    sync(device)
    return time.perf_counter() - start


def _time_inference(model: nn.Module, x, device: torch.device) -> float:
    """Seconds of one forward under ``no_grad``."""
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    sync(device)
    return time.perf_counter() - start


def _mv_flops(a_shape, x_shape, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmv_flops(self_shape, a_shape, x_shape, out_shape=None, **kwargs) -> int:
    return _mv_flops(a_shape, x_shape)


def _baddbmm_flops(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * a_shape[2] * b_shape[2]


# Products torch's counter does not know: the in-place batched product-accumulate (our pair
# terms) and matrix-vector products (our row sums); without them it counts half our work.
_EXTRA_FLOPS = {
    torch.ops.aten.baddbmm_: _baddbmm_flops,
    torch.ops.aten.mv: _mv_flops,
    torch.ops.aten.addmv: _addmv_flops,
    torch.ops.aten.addmv_: _addmv_flops,
}


def matmul_flops(model: nn.Module, x) -> int:
    """Floating-point operations of the matrix products (and convolutions) in one forward +
    backward, as ``torch.utils.flop_counter`` counts them (2 per multiply-add)."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS)
    with counter:
        model.zero_grad(set_to_none=True)
        _loss(model(x)).backward()
    return counter.get_total_flops()


def matmul_peak(
    device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 10
) -> float:
    """The machine's measured matmul throughput (FLOP/s): the median of ``reps`` products of two
    ``size x size`` matrices, after two warm-ups."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for r in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if r >= 2:
            times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def run_case(
    case: Case,
    reps: int,
    warmup: int = 3,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Time one case: forward + backward and inference, both sides interleaved repetition by
    repetition (the order alternating), medians after ``warmup`` repetitions."""
    device = device if device is not None else torch.device("cpu")
    torch.manual_seed(0)
    c = case.channels[0]
    weights = [torch.randn(case.batch, c, *s).to(device, dtype) for s in case.spec.weight_shapes]
    biases = [torch.randn(case.batch, c, *s).to(device, dtype) for s in case.spec.bias_shapes]
    x_ours = WeightSpaceFeatures(weights, biases)
    x_ref = RefFeatures(weights, biases)
    m_ours = ours(case).to(device, dtype)
    m_ref = reference(case, x_ref).to(device, dtype)
    runs: dict[str, list[float]] = {
        k: [] for k in ("weightspace", "nfn", "weightspace_inf", "nfn_inf")
    }
    timers: list[tuple[str, Callable[[], float]]] = [
        ("weightspace", lambda: _time(m_ours, x_ours, device)),
        ("nfn", lambda: _time(m_ref, x_ref, device)),
        ("weightspace_inf", lambda: _time_inference(m_ours, x_ours, device)),
        ("nfn_inf", lambda: _time_inference(m_ref, x_ref, device)),
    ]
    for r in range(warmup + reps):
        order = timers if r % 2 == 0 else [timers[1], timers[0], timers[3], timers[2]]
        for name, fn in order:
            t = fn()
            if r >= warmup:
                runs[name].append(t)
    ms = {k: 1e3 * statistics.median(v) for k, v in runs.items()}
    flops = matmul_flops(m_ours, x_ours)
    return {
        "case": case.name,
        "weightspace_ms": round(ms["weightspace"], 3),
        "nfn_ms": round(ms["nfn"], 3),
        "speedup": round(ms["nfn"] / ms["weightspace"], 2),
        "weightspace_inference_ms": round(ms["weightspace_inf"], 3),
        "nfn_inference_ms": round(ms["nfn_inf"], 3),
        "inference_speedup": round(ms["nfn_inf"] / ms["weightspace_inf"], 2),
        "gflop": round(flops / 1e9, 3),
        "nfn_gflop": round(matmul_flops(m_ref, x_ref) / 1e9, 3),
        "weightspace_gflops": round(flops / ms["weightspace"] / 1e6, 1),
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
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--no-retain-memory", action="store_true", help="leave glibc's malloc at its default"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    retained = False if args.no_retain_memory or device.type != "cpu" else retain_freed_memory()
    machine = machine_info(device)
    peaks = [matmul_peak(device, dtype)]
    print(
        f"# {args.dtype}, medians of {args.reps} interleaved reps; {machine_line(machine)}; "
        f"retain_freed_memory: {retained}"
    )
    print(
        "| case | weightspace fwd+bwd (ms) | nfn 0.1.2 fwd+bwd (ms) | speed-up "
        "| weightspace inference (ms) | nfn inference (ms) | inference speed-up "
        "| matmul GFLOP (fwd+bwd) | weightspace GFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for case in CASES:
        res = run_case(case, args.reps, device=device, dtype=dtype)
        results.append(res)
        print(
            f"| {res['case']} | {res['weightspace_ms']:.2f} | {res['nfn_ms']:.2f} "
            f"| {res['speedup']:.2f}x | {res['weightspace_inference_ms']:.2f} "
            f"| {res['nfn_inference_ms']:.2f} | {res['inference_speedup']:.2f}x "
            f"| {res['gflop']:.2f} | {res['weightspace_gflops']:.1f} |",
            flush=True,
        )
    peaks.append(matmul_peak(device, dtype))
    peak = max(peaks)
    print(
        f"# matmul peak ({args.dtype}, 2048^3, median of 10): "
        f"{' / '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s (before / after the cases)"
    )
    for res in results:
        res["share_of_peak"] = round(res["weightspace_gflops"] * 1e9 / peak, 3)
        print(f"#   {res['case']}: {100 * res['share_of_peak']:.0f} % of the peak")
    if args.json:
        with open(args.json, "w") as f:
            doc = {
                "machine": machine,
                "device": str(device),
                "dtype": args.dtype,
                "reps": args.reps,
                "retain_freed_memory": retained,
                "matmul_peak_gflops": [round(p / 1e9, 1) for p in peaks],
                "results": results,
            }
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
