"""What a task does to the weights before its model sees them: standardisation, and training
on random function-preserving copies of each network (the one augmentation of every task).

:class:`Standardized` divides each weight and bias tensor by one scalar scale after subtracting
one scalar shift, both measured on the training split; a scalar per tensor commutes with every
neuron permutation, so the model's symmetry is untouched.

A network's weights can change without changing its function: hidden neurons can be permuted
(always), negated (odd activations: tanh, sine) or scaled by a positive factor that the next
layer undoes (ReLU). :class:`SymmetryAugmentation` draws a fresh such change per network and
step, and :class:`AugmentedLoss` applies it to the training batches of a supervised objective.
The target is a property of the function, so it is unchanged.

It lives in the objective rather than in the dataset or the model. Drawn per batch on the
device, it costs a few batched tensor operations instead of one per item on the CPU, and its
random numbers come from torch's global generator, which :func:`~weightspace.train.fit` seeds
and checkpoints, so a resumed run draws the same copies. Models stay plain functions of the
weights (evaluation never augments, a saved model carries no augmentation flag), and validation
and test items are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from weightspace import symmetry
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec
from weightspace.train.loop import Supervised, split_batch

__all__ = ["AugmentedLoss", "Standardized", "SymmetryAugmentation"]


@dataclass(frozen=True)
class SymmetryAugmentation:
    """Random function-preserving changes of a batch of networks, drawn per network.

    Attributes
    ----------
    spec:
        The weight space.
    signs:
        Negate each hidden neuron with probability 1/2 (networks with an odd activation).
    scales:
        Scale each hidden neuron by a log-uniform factor in ``[1/max_factor, max_factor]`` and
        divide its outgoing weights by it (ReLU networks). With ``signs`` too, the per-network
        ``odd`` mask passed to :meth:`__call__` says which networks get which.
    permute:
        Permute each network's hidden neurons by a uniformly random HNP element.
    half_periods:
        Shift each hidden neuron's bias by half a period ``π/omega0`` with probability 1/2 and
        negate its outgoing weights (:func:`~weightspace.symmetry.shift_half_periods`). Every
        network of the batch must be a sine network of frequency ``omega0`` (SIRENs).
    max_factor:
        Range of the scales.
    omega0:
        The sine frequency for ``half_periods``.

    Shapes
    ------
    - x: :class:`WeightSpaceFeatures` ``W_i (B, C, n_i, n_{i-1}, *kernel)``
    - odd: ``(B,)`` bool, or ``None`` (every network is odd when ``signs``)
    - returns: features of the same shapes
    """

    spec: NetworkSpec
    signs: bool = False
    scales: bool = False
    permute: bool = False
    max_factor: float = 2.0
    half_periods: bool = False
    omega0: float = 30.0

    def __call__(self, x: WeightSpaceFeatures, odd: Tensor | None = None) -> WeightSpaceFeatures:
        b, device = x.batch_size, x.device
        if self.scales:
            factors = symmetry.sample_scales(
                self.spec, b, max_factor=self.max_factor, device=device
            )
            if self.signs and odd is not None:  # odd networks keep their scale: they flip
                factors = [torch.where(odd.view(-1, 1), 1.0, f) for f in factors]
            x = symmetry.rescale_neurons(x, factors)
        if self.signs:
            signs = symmetry.sample_signs(self.spec, b, device=device)
            if self.scales and odd is not None:  # ReLU networks are not flipped
                signs = [torch.where(odd.view(-1, 1), s, 1.0) for s in signs]
            x = symmetry.flip_signs(x, signs)
        if self.half_periods:
            shifts = symmetry.sample_half_period_shifts(self.spec, b, device=device)
            x = symmetry.shift_half_periods(x, shifts, omega0=self.omega0)
        if self.permute:
            x = x.permute(symmetry.sample(self.spec, "hnp", batch_size=b, device=device))
        return x

    @property
    def active(self) -> bool:
        return self.signs or self.scales or self.permute or self.half_periods


class AugmentedLoss(Supervised):
    """``loss_fn(model(augment(x)), y)`` on training batches, ``loss_fn(model(x), y)`` otherwise.

    Training items may carry a third field, the per-network ``odd`` mask of the augmentation.
    """

    def __init__(
        self, loss_fn: Callable[[Any, Any], Tensor], augment: SymmetryAugmentation | None
    ) -> None:
        super().__init__(loss_fn)
        self.augment = augment if augment is not None and augment.active else None

    def __call__(self, model: nn.Module, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        extra = None
        if isinstance(batch, tuple | list) and len(batch) == 3:
            batch, extra = batch[:2], batch[2]
        x, y = split_batch(batch, "fit")
        if self.augment is not None and model.training:
            x = self.augment(x, extra)
        return self.loss_fn(model(x), y), {}


class Standardized(nn.Module):
    """``net`` applied to per-tensor standardised weights: tensor t becomes
    ``(t - shift) / scale``.

    ``shift`` and ``scale`` are ``(2L,)`` buffers in ``spec.tensors`` order (W_1..W_L,
    b_1..b_L), the identity until :meth:`set_statistics`.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: whatever ``net`` returns
    """

    def __init__(self, net: nn.Module, spec: NetworkSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec
        self.register_buffer("shift", torch.zeros(len(spec.tensors)))
        self.register_buffer("scale", torch.ones(len(spec.tensors)))

    @torch.no_grad()
    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Each tensor's mean and standard deviation over all networks and entries (in float64;
        a constant tensor keeps scale 1)."""
        check_features(features, self.spec, 1, f"{type(self).__name__}.set_statistics")
        std, mean = zip(*(torch.std_mean(t.double(), correction=0) for t in features.tensors))
        std = torch.stack(std)
        self.shift.copy_(torch.stack(mean))
        self.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, x: WeightSpaceFeatures) -> Any:
        check_features(x, self.spec, 1, type(self).__name__)
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        tensors = [(t - shift[k]) / scale[k] for k, t in enumerate(x.tensors)]
        return self.net(WeightSpaceFeatures.from_tensors(tensors, self.spec))
