"""The in-memory model zoo that every zoo source produces and every predictor consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

#: Split codes stored in :attr:`Zoo.split`.
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


@dataclass
class Zoo:
    """N trained networks of one architecture, one checkpoint each, with their metrics.

    Attributes
    ----------
    spec:
        The weight space.
    features:
        ``WeightSpaceFeatures`` with batch N and 1 channel (float32).
    test_accuracy:
        ``(N,)`` float tensor, the regression target of the generalization task: each value in
        [0, 1], or NaN for a network without one (diverged; :meth:`finite` drops it).
    metadata:
        One dict per network: hyperparameters and metrics (strings or numbers).
    split:
        ``(N,)`` int tensor with codes from :data:`SPLITS`.
    info:
        Provenance: source, dataset, seed, checkpoint, package version, …
    """

    spec: NetworkSpec
    features: WeightSpaceFeatures
    test_accuracy: Tensor
    metadata: list[dict[str, Any]]
    split: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.features.batch_size
        if self.features.spec != self.spec:
            raise ValueError(f"Zoo: features are on {self.features.spec}, spec says {self.spec}")
        if self.features.channels != 1:
            raise ValueError(f"Zoo: features must have 1 channel, got {self.features.channels}")
        for name, value in (("test_accuracy", self.test_accuracy), ("split", self.split)):
            if tuple(value.shape) != (n,):
                raise ValueError(f"Zoo: {name} has shape {tuple(value.shape)}, expected ({n},)")
        if len(self.metadata) != n:
            raise ValueError(f"Zoo: metadata has {len(self.metadata)} rows for {n} networks")
        if not self.test_accuracy.is_floating_point():
            raise ValueError(f"Zoo: test_accuracy is {self.test_accuracy.dtype}, expected floats")
        bad = ~(
            self.test_accuracy.isnan() | ((self.test_accuracy >= 0) & (self.test_accuracy <= 1))
        )
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            source = self.info.get("root") or self.info.get("source") or "the zoo"
            raise ValueError(
                f"Zoo ({source}): network {i} has test_accuracy {float(self.test_accuracy[i])}; "
                "expected a value in [0, 1], or NaN for a diverged network"
            )
        bad = set(self.split.unique().tolist()) - set(SPLITS.values())
        if bad:
            raise ValueError(f"Zoo: split holds unknown codes {sorted(bad)}; expected {SPLITS}")

    def __len__(self) -> int:
        return self.features.batch_size

    def subset(self, index: Tensor | Sequence[int]) -> Zoo:
        """The networks at ``index`` (a LongTensor, list of ints or boolean mask)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = [self.metadata[i] for i in index.tolist()]
        return Zoo(
            self.spec,
            self.features[index],
            self.test_accuracy[index],
            rows,
            self.split[index],
            dict(self.info),
        )

    @staticmethod
    def cat(zoos: Sequence[Zoo], info: dict[str, Any] | None = None) -> Zoo:
        """The networks of ``zoos`` (one architecture) one after another; ``info`` (default: the
        first zoo's) describes the result."""
        if not zoos:
            raise ValueError("Zoo.cat needs at least one zoo")
        spec = zoos[0].spec
        for n, z in enumerate(zoos):
            if z.spec != spec:
                raise ValueError(f"Zoo.cat: zoos[{n}] is on {z.spec}, zoos[0] on {spec}")
        return Zoo(
            spec,
            WeightSpaceFeatures.cat([z.features for z in zoos]),
            torch.cat([z.test_accuracy for z in zoos]),
            [row for z in zoos for row in z.metadata],
            torch.cat([z.split for z in zoos]),
            dict(zoos[0].info) if info is None else info,
        )

    def part(self, name: str) -> Zoo:
        """The ``"train"``, ``"val"`` or ``"test"`` networks."""
        if name not in SPLITS:
            raise ValueError(f"Zoo.part: unknown split {name!r}; expected one of {tuple(SPLITS)}")
        return self.subset(self.split == SPLITS[name])

    def finite(self) -> tuple[Zoo, int]:
        """Drop diverged networks (any NaN/Inf weight or a non-finite accuracy): ``(zoo, dropped)``."""
        ok = torch.isfinite(self.test_accuracy)
        for t in self.features.tensors:
            ok &= torch.isfinite(t.reshape(len(self), -1)).all(dim=1)
        return self.subset(ok), int((~ok).sum())


def fixed_split(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> Tensor:
    """A seeded random train/val/test assignment of ``n`` networks with the given fractions."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    split = torch.full((n,), SPLITS["test"], dtype=torch.long)
    split[order[:n_train]] = SPLITS["train"]
    split[order[n_train : n_train + n_val]] = SPLITS["val"]
    return split
