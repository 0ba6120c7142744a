"""What a task does to the weights before its model sees them: standardisation, and training
on random function-preserving copies of each network (the one augmentation of every task).

:class:`Standardized` (from :mod:`weightspace.models.standardize`, where models that hold
one, like the hybrid probe model, find it) divides each weight and bias tensor by one scalar
scale after subtracting one scalar shift, both measured on the training split.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from weightspace import symmetry
from weightspace.functional.affine import precompose_affine, random_similarities
from weightspace.models.standardize import Standardized
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.train.loop import Supervised, split_batch

__all__ = ["AffineAugmentation", "AugmentedLoss", "Standardized", "SymmetryAugmentation"]


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


@dataclass(frozen=True)
class AffineAugmentation:
    """Random moves, turns and zooms of what coordinate networks (INRs) draw, made on the weights.

    Each network becomes ``x ↦ f(s R(θ) x + t)`` (:func:`weightspace.functional.precompose_affine`,
    exact: only the first layer changes), with ``θ`` uniform in ``±degrees``, ``log s`` in
    ``±log scale`` and each coordinate of ``t`` in ``±shift``; with ``mirror`` set to an input
    axis, half the networks also have that coordinate negated first (``mirror=1``: a
    left-right mirror of the image, for classes that survive one, such as clothes, not digits). Unlike
    :class:`SymmetryAugmentation` this changes the function: it is image augmentation, for
    labels that survive a small move of the image (a digit's class), on 2-D inputs.

    Shapes
    ------
    - x: :class:`WeightSpaceFeatures` of dense networks with 2 inputs
    - returns: features of the same shapes
    """

    degrees: float = 0.0
    scale: float = 1.0
    shift: float = 0.0
    mirror: int | None = None

    def __call__(self, x: WeightSpaceFeatures, odd: Tensor | None = None) -> WeightSpaceFeatures:
        if x.spec.widths[0] != 2:
            raise ValueError(
                f"AffineAugmentation: moves 2-D inputs (coordinate networks), got {x.spec}"
            )
        matrix, offset = random_similarities(
            x.batch_size,
            max_degrees=self.degrees,
            max_scale=self.scale,
            max_shift=self.shift,
            mirror_axis=self.mirror,
            device=x.device,
        )
        return precompose_affine(x, matrix, offset)

    @property
    def active(self) -> bool:
        return self.degrees > 0 or self.scale > 1 or self.shift > 0 or self.mirror is not None


#: An augmentation: ``(features, odd mask or None) -> features``, with an ``active`` flag.
Augmentation = SymmetryAugmentation | AffineAugmentation


class AugmentedLoss(Supervised):
    """``loss_fn(model(augment(x)), y)`` on training batches, ``loss_fn(model(x), y)`` otherwise.

    Training items may carry a third field, the per-network ``odd`` mask of the augmentation.
    """

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Tensor],
        augment: Augmentation | Sequence[Augmentation] | None,
    ) -> None:
        super().__init__(loss_fn)
        given = [] if augment is None else [augment] if callable(augment) else list(augment)
        self.augments = [a for a in given if a.active]

    def __call__(self, model: nn.Module, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        extra = None
        if isinstance(batch, tuple | list) and len(batch) == 3:
            batch, extra = batch[:2], batch[2]
        x, y = split_batch(batch, "fit")
        if model.training and self.augments:
            # Models that take more than the weights (a probe model's activation index) get
            # (features, …) tuples: the augmentation changes the features only.
            features = x[0] if isinstance(x, tuple | list) else x
            for augment in self.augments:
                features = augment(features, extra)
            x = (features, *x[1:]) if isinstance(x, tuple | list) else features
        return self.loss_fn(model(x), y), {}
