"""Equivariance and invariance checks in float64, reporting the worst error per tensor.

Every check runs on a device: ``device=`` if given, else the device of the module's parameters,
else that of the ``features`` passed in, else the CPU. Inputs and group elements are drawn on a
seeded CPU generator and copied there, so a check sees the same inputs on every device.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from weightspace import symmetry
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import Mode, NetworkSpec

FeatureFn = Callable[[WeightSpaceFeatures], WeightSpaceFeatures]
InvariantFn = Callable[[WeightSpaceFeatures], Tensor]


class EquivarianceError(AssertionError):
    """Raised when a function fails an equivariance or invariance check."""


def random_features(
    spec: NetworkSpec,
    batch_size: int = 2,
    channels: int = 1,
    *,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> WeightSpaceFeatures:
    """Standard-normal features on ``spec``."""

    def draw(shape: tuple[int, ...]) -> Tensor:
        return torch.randn(batch_size, channels, *shape, generator=generator, dtype=dtype).to(
            device
        )

    return WeightSpaceFeatures(
        [draw(s) for s in spec.weight_shapes], [draw(s) for s in spec.bias_shapes], spec
    )


def _as_float64(fn: Callable) -> Callable:
    if isinstance(fn, nn.Module):
        module = copy.deepcopy(fn).to(torch.float64)
        module.eval()
        return module
    return fn


def _device_of(
    fn: Callable, device: torch.device | str | None, features: WeightSpaceFeatures | None
) -> torch.device:
    """``device``, else where the module ``fn`` keeps its parameters (or buffers), else where
    the given ``features`` are, else the CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(fn, nn.Module):
        for t in itertools.chain(fn.parameters(), fn.buffers()):
            return t.device
    return features.device if features is not None else torch.device("cpu")


def _setup(
    fn: Callable,
    spec: NetworkSpec,
    features: WeightSpaceFeatures | None,
    batch_size: int,
    in_channels: int,
    seed: int,
    device: torch.device | str | None = None,
) -> tuple[Callable, WeightSpaceFeatures, torch.Generator]:
    """The float64 function, float64 input features (both on the check's device) and the
    seeded CPU generator of a check."""
    dev = _device_of(fn, device, features)
    gen = torch.Generator().manual_seed(seed)
    if features is None:
        features = random_features(spec, batch_size, in_channels, generator=gen)
    fn = _as_float64(fn)
    if isinstance(fn, nn.Module):
        fn = fn.to(dev)
    return fn, features.to(device=dev, dtype=torch.float64), gen


def _relative(a: Tensor, b: Tensor) -> float:
    scale = max(b.abs().max().item(), a.abs().max().item(), 1e-300) if b.numel() else 1.0
    return (a - b).abs().max().item() / scale if b.numel() else 0.0


def equivariance_errors(
    fn: FeatureFn,
    spec: NetworkSpec,
    mode: Mode = "hnp",
    *,
    in_channels: int = 1,
    batch_size: int = 2,
    trials: int = 3,
    seed: int = 0,
    features: WeightSpaceFeatures | None = None,
    perms: list | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Worst relative error per output tensor of ``fn(g·x)`` against ``g·fn(x)``.

    ``fn`` maps features to features (an ``nn.Module`` is copied and cast to float64, in eval
    mode). Each of ``trials`` draws a random group element of ``mode`` (or uses ``perms``); the
    error of a tensor is ``max|fn(g·x) - g·fn(x)| / max|g·fn(x)|``. ``device``: where the
    check runs (see the module docstring).
    """
    fn, x, gen = _setup(fn, spec, features, batch_size, in_channels, seed, device)
    with torch.no_grad():
        y = fn(x)
        worst: dict[str, float] = {t.name: 0.0 for t in y.spec.tensors}
        for _ in range(trials if perms is None else 1):
            g = perms if perms is not None else symmetry.sample(spec, mode, generator=gen)
            lhs = fn(x.permute(g))
            rhs = y.permute(g)
            for t, a, b in zip(y.spec.tensors, lhs.tensors, rhs.tensors):
                worst[t.name] = max(worst[t.name], _relative(a, b))
    return worst


def assert_equivariant(
    fn: FeatureFn,
    spec: NetworkSpec,
    mode: Mode = "hnp",
    *,
    in_channels: int = 1,
    batch_size: int = 2,
    trials: int = 3,
    rtol: float = 1e-9,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Assert ``fn(g·x) == g·fn(x)`` for random features and group elements, in float64.

    Returns the worst relative error per output tensor; raises :class:`EquivarianceError` naming
    each tensor above ``rtol``. ``device``: where the check runs (see the module docstring).
    """
    errors = equivariance_errors(
        fn,
        spec,
        mode,
        in_channels=in_channels,
        batch_size=batch_size,
        trials=trials,
        seed=seed,
        device=device,
    )
    bad = {name: err for name, err in errors.items() if not err <= rtol}
    if bad:
        detail = ", ".join(f"{name}: {err:.3g}" for name, err in bad.items())
        raise EquivarianceError(
            f"not {mode.upper()}-equivariant on {spec} (rtol={rtol:g}): {detail}"
        )
    return errors


def invariance_error(
    fn: InvariantFn,
    spec: NetworkSpec,
    mode: Mode = "hnp",
    *,
    in_channels: int = 1,
    batch_size: int = 2,
    trials: int = 3,
    seed: int = 0,
    features: WeightSpaceFeatures | None = None,
    perturb: Callable[[WeightSpaceFeatures, torch.Generator], WeightSpaceFeatures] | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Worst relative error of ``fn(g·x)`` against ``fn(x)``.

    ``perturb`` replaces the group action (to run controls, e.g. :func:`inconsistent_permutation`).
    ``device``: where the check runs (see the module docstring).
    """
    fn, x, gen = _setup(fn, spec, features, batch_size, in_channels, seed, device)
    worst = 0.0
    with torch.no_grad():
        y = fn(x)
        for _ in range(trials):
            gx = (
                perturb(x, gen)
                if perturb is not None
                else x.permute(symmetry.sample(spec, mode, generator=gen))
            )
            worst = max(worst, _relative(fn(gx), y))
    return worst


def assert_invariant(
    fn: InvariantFn,
    spec: NetworkSpec,
    mode: Mode = "hnp",
    *,
    in_channels: int = 1,
    batch_size: int = 2,
    trials: int = 3,
    rtol: float = 1e-9,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> float:
    """Assert ``fn(g·x) == fn(x)`` for random features and group elements, in float64.

    Returns the worst relative error; raises :class:`EquivarianceError` above ``rtol``.
    ``device``: where the check runs (see the module docstring).
    """
    err = invariance_error(
        fn,
        spec,
        mode,
        in_channels=in_channels,
        batch_size=batch_size,
        trials=trials,
        seed=seed,
        device=device,
    )
    if not err <= rtol:
        raise EquivarianceError(
            f"not {mode.upper()}-invariant on {spec}: relative error {err:.3g} > {rtol:g}"
        )
    return err


def inconsistent_permutation(
    features: WeightSpaceFeatures, layer: int, generator: torch.Generator | None = None
) -> WeightSpaceFeatures:
    """A control that is *not* a symmetry: permute the rows of W_layer and b_layer only.

    The columns of W_{layer+1} keep their order, so the network's function changes. ``layer``
    must be a hidden layer (1..L-1) of width at least 2.
    """
    spec = features.spec
    if not 1 <= layer < spec.num_layers or spec.widths[layer] < 2:
        raise ValueError(
            f"inconsistent_permutation: layer {layer} is not a hidden layer of width >= 2 in {spec}"
        )
    n = spec.widths[layer]
    perm = torch.randperm(n, generator=generator)
    while torch.equal(perm, torch.arange(n)):
        perm = torch.randperm(n, generator=generator)
    perm = perm.to(features.device)
    weights, biases = list(features.weights), list(features.biases)
    weights[layer - 1] = weights[layer - 1].index_select(2, perm)
    biases[layer - 1] = biases[layer - 1].index_select(2, perm)
    return WeightSpaceFeatures(weights, biases)
