"""Experiments behind RESULTS.md (issue 13), not part of the package: NFN_HNP's pooled
features beside per-tensor statistics, in one MLP head.

``--read-out statistics`` (the default): StatNN's statistics of the raw weights. Such a model can
compute what StatNN computes and what NFN_HNP computes.

``--read-out scale`` (:class:`HNPWithScale`): each network's tensors divided by their own root
mean square before the NF-Layers, and the log RMS of each tensor beside the pool, so the layers
see shapes and the head sees scales; ``--read-out scale-mean`` adds each tensor's mean over its
RMS.

Both run through the generalization task's own runner, with ``build_predictor`` swapped for the
model, so data, split, training and scoring are those of ``train generalization --model hnp``.

    python benchmarks/hnp_with_statistics.py --zoo runs/zoo-fmnist-faithful --seed 0 \\
        --out runs/gen-faithful/hnp-stat-s0 [--read-out statistics|scale|scale-mean]
        [--epochs 30] [--patience 8]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from weightspace.models import InvariantNFN, MLPHead
from weightspace.models.baselines import NUM_STATISTICS, tensor_statistics
from weightspace.models.nfn import _encode
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import generalization


class _HNPWithScalars(nn.Module):
    """HNP NF-Layers → mean pool, concatenated with ``n_scalars`` per-network numbers that the
    subclass computes, in one MLP head."""

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: Sequence[int],
        head_hidden: Sequence[int],
        n_scalars: int,
    ) -> None:
        super().__init__()
        nfn = InvariantNFN(spec, "hnp", hidden_channels, (1,), 1, io_encoding=None)
        self.encoder, self.pool, self.spec = nfn.encoder, nfn.pool, spec
        width = self.pool.output_size(hidden_channels[-1]) + n_scalars
        self.head = MLPHead(width, head_hidden, 1, 0.0)

    def _read_out(self, layers_input: WeightSpaceFeatures, scalars: Tensor) -> Tensor:
        pooled = self.pool(_encode(self.encoder, layers_input))
        return self.head(torch.cat([pooled, scalars], dim=1))


class HNPWithStatistics(_HNPWithScalars):
    """HNP NF-Layers → mean pool, concatenated with :func:`tensor_statistics` of the input."""

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: Sequence[int] = (16, 16, 5),
        head_hidden: Sequence[int] = (1000,),
    ) -> None:
        super().__init__(spec, hidden_channels, head_hidden, NUM_STATISTICS * 2 * spec.num_layers)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        return self._read_out(x, tensor_statistics(x))


class HNPWithScale(_HNPWithScalars):
    """HNP NF-Layers on RMS-normalised tensors (per network and tensor) → mean pool,
    concatenated with each tensor's log RMS (and, with ``means``, its mean over its RMS)."""

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: Sequence[int] = (16, 16, 5),
        head_hidden: Sequence[int] = (1000,),
        means: bool = False,
    ) -> None:
        n_scalars = len(spec.tensors) * (2 if means else 1)
        super().__init__(spec, hidden_channels, head_hidden, n_scalars)
        self.means = means

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, 1, type(self).__name__)
        shapes, scalars = [], []
        for t in x.tensors:
            flat = t.reshape(t.shape[0], -1)
            rms = flat.square().mean(1).add(1e-12).sqrt()
            shapes.append(t / rms.view(-1, *([1] * (t.dim() - 1))))
            scalars.append(rms.log())
            if self.means:
                scalars.append(flat.mean(1) / rms)
        shaped = WeightSpaceFeatures.from_tensors(shapes, self.spec)
        return self._read_out(shaped, torch.stack(scalars, 1))


READ_OUTS = ("statistics", "scale", "scale-mean")


def _builder(read_out: str) -> Callable[..., nn.Module]:
    def build(
        model: str,
        spec: NetworkSpec,
        hidden_channels: tuple[int, ...] = (16, 16, 5),
        head_hidden: tuple[int, ...] = (1000,),
        **_: Any,
    ) -> nn.Module:
        if read_out == "statistics":
            return HNPWithStatistics(spec, hidden_channels, head_hidden)
        return HNPWithScale(spec, hidden_channels, head_hidden, means=read_out == "scale-mean")

    return build


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--read-out", choices=READ_OUTS, default="statistics")
    args = parser.parse_args(argv)
    config = generalization.GeneralizationConfig(
        zoo=args.zoo, model="hnp", out=args.out, seed=args.seed, epochs=args.epochs,
        patience=args.patience,
    )  # fmt: skip
    original = generalization.build_predictor
    generalization.build_predictor = _builder(args.read_out)
    try:
        metrics = generalization.run_generalization(config, progress=False)
    finally:
        generalization.build_predictor = original
    print({k: metrics[k] for k in ("kendall_tau", "r2", "mae", "best_epoch", "epochs_run")})
    return metrics


if __name__ == "__main__":
    main()
