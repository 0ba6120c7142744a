"""Probe features: run the networks on learned inputs and read what they compute.

A network's weights are one of many descriptions of its function: permuting hidden neurons,
flipping the signs of odd neurons, shifting a sine neuron by half a period or rescaling a ReLU
neuron all change the weights and leave the function alone. The outputs of a network on a set
of inputs ("probes") depend on the function only, so they are invariant to every one of these
symmetries at once, with no parameter sharing to derive. What remains to learn is *where to
look*: the probes are parameters, trained with the model that reads their outputs (probing;
Kahana et al. 2024, "Deep Linear Probe Generators for Weight Space Learning").

:class:`ProbeFeatures` runs the B networks of a :class:`~weightspace.WeightSpaceFeatures`
batch through :func:`weightspace.functional.forward` (batched and differentiable, MLPs and
CNNs alike) on ``num_probes`` learned inputs, in one of two parameterisations:

- ``"points"``: each probe is a free parameter;
- ``"deep-linear"`` (ProbeGen): probe k is ``G(z_k)`` for a learned latent code ``z_k`` and a
  generator ``G`` shared by all probes, a stack of linear layers without nonlinearities. ``G``
  is linear overall, but its factorised parameters and shared structure bias the probes toward
  few common directions, which ProbeGen found to overfit less than free probes.

Probes only see the function, so they ignore the input-output order that NP layers permute: the
features are HNP-invariant (and invariant to every function-preserving change of the weights),
not NP-invariant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from weightspace.nn.activation import get_activation
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec

__all__ = ["PROBE_GENERATORS", "ProbeFeatures"]

ActivationLike = str | Callable[[Tensor], Tensor]
ProbeGenerator = Literal["points", "deep-linear"]
PROBE_GENERATORS: tuple[str, ...] = ("points", "deep-linear")
PROBE_INITS: tuple[str, ...] = ("uniform", "normal")


class ProbeFeatures(nn.Module):
    """The outputs of each network on ``num_probes`` learned inputs, as one invariant vector.

    Parameters
    ----------
    spec:
        The weight space (dense layers, or conv layers followed by dense ones, as
        :func:`weightspace.functional.forward` runs them).
    num_probes:
        Number of probe inputs N.
    activation:
        The networks' hidden activation: a name of :func:`weightspace.nn.get_activation` or an
        entrywise callable (e.g. :func:`weightspace.data.inr.siren_activation` for this
        package's SIRENs). :meth:`forward` may override it per call, e.g. with one name per
        network for a zoo of mixed activations.
    final_activation:
        Optional name or callable applied to the networks' outputs.
    generator:
        ``"points"`` or ``"deep-linear"`` (see the module docstring).
    input_shape:
        Spatial shape of one input for conv networks (e.g. ``(28, 28)``); ``None`` for MLPs.
    init, init_scale:
        Initial probes: ``"uniform"`` in ``[-init_scale, init_scale]`` (the default suits
        SIRENs, whose inputs are coordinates in ``[-1, 1]``) or ``"normal"`` with standard
        deviation ``init_scale``. For ``"deep-linear"`` the generator is rescaled so that its
        initial probes have that spread.
    latent_dim, generator_depth:
        Width of the latent codes and number of linear layers of the deep-linear generator.
    stride, padding:
        Of every conv layer, as in :func:`weightspace.functional.forward`.
    gradients:
        Dense networks only: also read the derivatives of every output along every input
        coordinate at each probe (exact, by forward-mode differentiation; ``n_0`` more passes),
        multiplied by ``gradient_scale`` (e.g. one pixel's step for an INR, so they read as
        differences between neighbouring pixels). They depend on the function only, so they
        keep every invariance of the outputs; they tell the head which way the function rises
        at each probe (an image's edges), which a value alone does not.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel (the raw weights:
      standardising them would change the function)
    - output: ``(B, num_probes * n_L)``, probe-major (``[probe 1 outputs, probe 2 outputs, …]``);
      with ``gradients``, ``(B, num_probes * n_L * (1 + n_0))``, per probe its ``n_L`` outputs,
      then their derivatives along input 1, …, input ``n_0``

    Raises
    ------
    ValueError
        For an activation it cannot run (an unknown name), bad sizes or options, a conv space
        without ``input_shape``, and, in :meth:`forward`, weights that are NaN or infinite
        (naming the network and the tensor).
    """

    def __init__(
        self,
        spec: NetworkSpec,
        num_probes: int = 64,
        *,
        activation: ActivationLike = "relu",
        final_activation: ActivationLike | None = None,
        generator: ProbeGenerator = "points",
        input_shape: Sequence[int] | None = None,
        init: str = "uniform",
        init_scale: float = 1.0,
        latent_dim: int = 32,
        generator_depth: int = 3,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        gradients: bool = False,
        gradient_scale: float = 1.0,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"{who}: spec must be a NetworkSpec, got {type(spec).__name__}")
        for name, value in (
            ("num_probes", num_probes),
            ("latent_dim", latent_dim),
            ("generator_depth", generator_depth),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
        if generator not in PROBE_GENERATORS:
            raise ValueError(
                f"{who}: generator must be one of {PROBE_GENERATORS}, got {generator!r}"
            )
        if init not in PROBE_INITS:
            raise ValueError(f"{who}: init must be one of {PROBE_INITS}, got {init!r}")
        if not (
            isinstance(init_scale, int | float) and math.isfinite(init_scale) and init_scale > 0
        ):
            raise ValueError(f"{who}: init_scale must be a positive number, got {init_scale!r}")
        if not isinstance(gradients, bool):
            raise ValueError(f"{who}: gradients must be True or False, got {gradients!r}")
        if not (
            isinstance(gradient_scale, int | float)
            and not isinstance(gradient_scale, bool)
            and math.isfinite(gradient_scale)
            and gradient_scale > 0
        ):
            raise ValueError(
                f"{who}: gradient_scale must be a positive number, got {gradient_scale!r}"
            )
        # Resolve now, so that an activation it cannot run fails at construction.
        self.activation = _resolve(activation, who, "activation")
        self.final_activation = (
            None
            if final_activation is None
            else _resolve(final_activation, who, "final_activation")
        )
        # functional.forward imports this package's activations: import it when needed.
        from weightspace.functional.forward import _conv_prefix

        num_conv, dim = _conv_prefix(spec)
        if num_conv:
            if input_shape is None or len(tuple(input_shape)) != dim:
                raise ValueError(
                    f"{who}: {spec} starts with {dim}D conv layers; pass input_shape with "
                    f"{dim} spatial sizes (e.g. the images' height and width), got {input_shape!r}"
                )
            spatial = tuple(int(s) for s in input_shape)
            if any(s < 1 for s in spatial):
                raise ValueError(
                    f"{who}: input_shape must hold positive sizes, got {input_shape!r}"
                )
            if gradients:
                raise ValueError(
                    f"{who}: gradients=True needs a dense network; {spec} starts with conv "
                    "layers, whose input derivatives are whole images"
                )
        elif input_shape is not None and tuple(input_shape) != ():
            raise ValueError(
                f"{who}: {spec} is dense; input_shape must be None, got {input_shape!r}"
            )
        else:
            spatial = ()
        self.spec, self.num_probes, self.generator = spec, num_probes, generator
        self.probe_shape = (spec.widths[0], *spatial)
        self.stride, self.padding = stride, padding
        self.gradients, self.gradient_scale = gradients, float(gradient_scale)
        numel = math.prod(self.probe_shape)
        initial = _initial(num_probes, numel, init, float(init_scale))
        if generator == "points":
            self.points = nn.Parameter(initial)
        else:
            self.latents = nn.Parameter(torch.randn(num_probes, latent_dim))
            widths = [latent_dim] * generator_depth + [numel]
            self.layers = nn.Sequential(*(nn.Linear(a, b) for a, b in itertools.pairwise(widths)))
            self._match_spread(initial)

    @torch.no_grad()
    def _match_spread(self, target: Tensor) -> None:
        """Rescale the generator's last layer so its initial probes spread like ``target``."""
        last = self.layers[-1]
        assert isinstance(last, nn.Linear)
        last.bias.zero_()
        out = self.layers(self.latents)
        std = float(out.std())
        last.weight.mul_(float(target.std()) / max(std, 1e-12))
        last.bias.copy_(target.mean(0) - self.layers(self.latents).mean(0) + last.bias)

    @property
    def output_size(self) -> int:
        """Width of the feature vector: ``num_probes * n_L``, times ``1 + n_0`` with
        ``gradients``."""
        per_probe = 1 + self.spec.widths[0] if self.gradients else 1
        return self.num_probes * self.spec.widths[-1] * per_probe

    def probes(self) -> Tensor:
        """The current probe inputs: ``(num_probes, n_0, *input_shape)``."""
        flat = self.points if self.generator == "points" else self.layers(self.latents)
        return flat.reshape(self.num_probes, *self.probe_shape)

    def forward(
        self,
        x: WeightSpaceFeatures,
        activation: ActivationLike | Sequence[ActivationLike] | None = None,
    ) -> Tensor:
        """The networks' outputs on the probes; ``activation`` overrides the constructor's
        (a name/callable, or one per network)."""
        from weightspace.functional.forward import forward

        who = type(self).__name__
        check_features(x, self.spec, 1, who)
        _check_finite(x, who)
        probes = self.probes().to(dtype=x.dtype)
        act = self.activation if activation is None else activation

        def run(inputs: Tensor) -> Tensor:  # (B, N, n_L)
            return forward(
                x,
                inputs,
                act,
                final_activation=self.final_activation,
                stride=self.stride,
                padding=self.padding,
            )

        if not self.gradients:
            return run(probes).reshape(x.batch_size, self.output_size)
        parts = []
        for axis in range(probes.shape[1]):
            direction = torch.zeros_like(probes)
            direction[:, axis] = self.gradient_scale
            out, slope = torch.func.jvp(run, (probes,), (direction,))
            parts += [out] if axis == 0 else []
            parts.append(slope)
        return torch.cat(parts, dim=2).reshape(x.batch_size, self.output_size)

    def extra_repr(self) -> str:
        name = getattr(self.activation, "__name__", "custom")
        return (
            f"spec={self.spec}, num_probes={self.num_probes}, generator={self.generator!r}, "
            f"probe_shape={self.probe_shape}, activation={name}, output_size={self.output_size}"
            + (f", gradients (scale {self.gradient_scale:g})" if self.gradients else "")
        )


def _resolve(activation: ActivationLike, who: str, name: str) -> Callable[[Tensor], Tensor]:
    try:
        return get_activation(activation)
    except ValueError as err:
        raise ValueError(f"{who}: cannot run the networks' {name}: {err}") from None


def _initial(n: int, numel: int, init: str, scale: float) -> Tensor:
    if init == "uniform":
        return (torch.rand(n, numel) * 2 - 1) * scale
    return torch.randn(n, numel) * scale


def _check_finite(x: WeightSpaceFeatures, who: str) -> None:
    """Refuse NaN or infinite weights, naming the first network and tensor that hold one."""
    for t, tensor_spec in zip(x.tensors, x.spec.tensors, strict=True):
        bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{who}: network {b} of the batch has NaN or infinite entries in "
                f"{tensor_spec.name}; probes cannot run it (drop diverged networks first)"
            )
