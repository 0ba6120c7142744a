"""Neural functional networks (NFNs): stacks of NF-Layers with an invariant or equivariant output.

- :class:`InvariantNFN` maps a network's weights to a vector (e.g. its predicted test accuracy):
  NF-Layers, activations, an invariant pool, then an MLP head.
- :class:`EquivariantNFN` maps weights to weight-space features of the same shape (e.g. an edit
  of the network): NF-Layers only.

Under NP the models see input and output neurons as exchangeable; an IO encoding
(:mod:`weightspace.nn.encoding`) tells them apart, making the model HNP- but not NP-equivariant.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

from torch import Tensor, nn

from weightspace.nn.activation import Activation, ChannelDropout
from weightspace.nn.encoding import GaussianFourierFeatures, LearnedIOEncoding, SinusoidalIOEncoding
from weightspace.nn.linear import HNPLinear, NPLinear, PointwiseLinear, _EquivariantLinear
from weightspace.nn.pool import HNPPool, NPPool, StatsPool
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import Mode, NetworkSpec, check_mode

IOEncoding = Literal["learned", "sinusoidal"]
IO_ENCODINGS: tuple[str, ...] = ("learned", "sinusoidal")
ActivationArg = str | Callable[[Tensor], Tensor]

_LAYERS: dict[str, type[nn.Module]] = {
    "np": NPLinear,
    "hnp": HNPLinear,
    "pt": PointwiseLinear,
}

#: The invariant read-outs of :class:`InvariantNFN`.
POOLS: tuple[str, ...] = ("mean", "stats")


class MLPHead(nn.Sequential):
    """A plain MLP: ``Linear → ReLU → Dropout`` per hidden width, then a final ``Linear``.

    Used as the head of every invariant model (NFNs and baselines alike).

    Parameters
    ----------
    in_features:
        Width of the input vector.
    hidden:
        Hidden widths; ``()`` gives a single linear map.
    out_features:
        Width of the output.
    dropout:
        Dropout probability after each hidden activation (no dropout module when 0).

    Shapes
    ------
    - input: ``(B, in_features)``
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (1000,),
        out_features: int = 1,
        dropout: float = 0.0,
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPHead: dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features


def _front_end(
    spec: NetworkSpec,
    mode: str,
    channels: int,
    io_encoding: IOEncoding | Literal["auto"] | None,
    fourier_features: int | None,
    who: str,
    fourier_scale: float = 10.0,
) -> tuple[list[nn.Module], int]:
    """The modules before the first NF-Layer, and the channels they output.

    ``io_encoding="auto"`` means sinusoidal under NP and none otherwise.
    """
    modules: list[nn.Module] = []
    if fourier_features is not None:
        fourier = GaussianFourierFeatures(
            channels, mapping_size=fourier_features, scale=fourier_scale
        )
        modules.append(fourier)
        channels = fourier.out_channels
    if io_encoding == "auto":
        io_encoding = "sinusoidal" if mode == "np" else None
    if io_encoding is None:
        return modules, channels
    if io_encoding not in IO_ENCODINGS:
        raise ValueError(
            f"{who}: io_encoding must be one of {IO_ENCODINGS}, 'auto' or None, got {io_encoding!r}"
        )
    if mode == "hnp":
        raise ValueError(
            f"{who}: io_encoding={io_encoding!r} is for modes that permute inputs and outputs; "
            "under mode 'hnp' they already keep their order, so pass io_encoding=None"
        )
    if io_encoding == "learned":
        modules.append(LearnedIOEncoding(spec, channels))
        return modules, channels
    sinusoidal = SinusoidalIOEncoding(spec, channels)
    modules.append(sinusoidal)
    return modules, sinusoidal.out_channels


def _check_channel_dropout(p: float, who: str) -> None:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise ValueError(f"{who}: channel_dropout must be a number in [0, 1), got {p!r}")


def _nf_layers(
    spec: NetworkSpec,
    mode: str,
    widths: Sequence[int],
    activation: ActivationArg,
    activate_last: bool,
    channel_dropout: float = 0.0,
) -> list[nn.Module]:
    """NF-Layers mapping ``widths[0]`` channels through ``widths[1:]``, with activations between.

    A ReLU after an NP or HNP layer is fused into the layer (in place, masked in its backward);
    an ``nn.Identity`` then takes the activation's slot, so module indices (and state-dict keys)
    are the same either way. A :class:`~weightspace.nn.ChannelDropout` follows each activation
    when ``channel_dropout > 0``; it has no parameters, and without it the modules are as before.
    """
    layer = _LAYERS[mode]
    fuse = activation == "relu" and mode in ("np", "hnp")
    modules: list[nn.Module] = []
    for n, (c_in, c_out) in enumerate(itertools.pairwise(widths), start=1):
        activated = activate_last or n < len(widths) - 1
        if activated and fuse:
            modules.append(layer(spec, c_in, c_out, activation="relu"))
            modules.append(nn.Identity())
        else:
            modules.append(layer(spec, c_in, c_out))
            if activated:
                modules.append(Activation(activation))
        if activated and channel_dropout > 0:
            modules.append(ChannelDropout(channel_dropout))
    return modules


def _encode(encoder: nn.Sequential, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
    """``encoder(x)``, module by module, the same values with these fusions:

    - a sinusoidal IO encoding (after Fourier features or first) that feeds an NF-Layer is
      handed to that layer as ``constant`` channels: they are the same for every network, so
      their share of the layer is computed once per batch;
    - Fourier features followed by a sinusoidal IO encoding that feeds anything else are built
      as one tensor per weight and bias (one write of the widest features, not two);
    - a :class:`~weightspace.nn.ChannelDropout` after an NP or HNP layer (an ``nn.Identity``
      between them, where the ReLU is fused) is folded into that layer's products
      (``out_scale``): the same masks, drawn from the same random stream, without a pass over
      the features in each direction.
    """
    modules = list(encoder)
    constant: WeightSpaceFeatures | None = None
    start = 1 if modules and isinstance(modules[0], GaussianFourierFeatures) else 0
    if len(modules) > start and isinstance(modules[start], SinusoidalIOEncoding):
        io = modules[start]
        if len(modules) > start + 1 and isinstance(modules[start + 1], _EquivariantLinear):
            x = modules[0](x) if start else x
            constant = io.encodings(x.dtype, x.device)
            modules = modules[start + 1 :]
        elif start:  # one tensor per weight and bias, the encodings written beside the features
            x = modules[0](x, io=io)
            modules = modules[2:]
    i = 0
    while i < len(modules):
        module, i = modules[i], i + 1
        if isinstance(module, _EquivariantLinear):
            scale = None
            if module.folds_channel_scale:
                j = i
                while j < len(modules) and isinstance(modules[j], nn.Identity):
                    j += 1
                if j < len(modules) and isinstance(modules[j], ChannelDropout):
                    dropout, i = modules[j], j + 1
                    scale = dropout.draw_scale(x.batch_size, module.out_channels, x.device, x.dtype)
            x = module(x, out_scale=scale, constant=constant)
            constant = None
            continue
        x = module(x)
    return x


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class InvariantNFN(nn.Module):
    """Invariant NFN: [Fourier features] → [IO encoding] → NF-Layers + activations [+ channel
    dropout] → pool → MLP.

    Maps each network's weights to a vector that does not change when its hidden neurons are
    permuted (the paper's NFN_HNP and NFN_NP generalisation predictors and INR classifiers).

    Parameters
    ----------
    spec:
        The weight space of the input networks.
    mode:
        ``"hnp"``: :class:`~weightspace.nn.HNPLinear` layers and :class:`~weightspace.nn.HNPPool`
        (invariant to hidden-neuron permutations). ``"np"``: :class:`~weightspace.nn.NPLinear`
        and :class:`~weightspace.nn.NPPool` (invariant to all neuron permutations, unless an IO
        encoding tells inputs and outputs apart).
    hidden_channels:
        Output channels of each NF-Layer; each is followed by the activation.
    head_hidden:
        Hidden widths of the MLP head.
    out_features:
        Output width.
    in_channels:
        Channels of the input features (1 for raw weights).
    io_encoding:
        ``"learned"`` (:class:`~weightspace.nn.encoding.LearnedIOEncoding`), ``"sinusoidal"``
        (:class:`~weightspace.nn.encoding.SinusoidalIOEncoding`) or ``None``; only allowed under
        ``"np"``. The default ``"auto"`` is sinusoidal under NP and none under HNP.
    fourier_features:
        If given, the mapping size of :class:`~weightspace.nn.encoding.GaussianFourierFeatures`
        applied first.
    fourier_scale:
        Their frequency scale.
    dropout:
        Dropout in the MLP head.
    activation:
        Entrywise nonlinearity after each NF-Layer (the head uses ReLU).
    channel_dropout:
        Probability of a :class:`~weightspace.nn.ChannelDropout` after each NF-Layer's
        activation, which drops whole channels of a network in training (no module when 0).
    pool:
        ``"mean"``: :class:`~weightspace.nn.NPPool` / :class:`~weightspace.nn.HNPPool`;
        ``"stats"``: :class:`~weightspace.nn.StatsPool` (mean, standard deviation and quantiles
        of the last NF-Layer's channels, per tensor).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with ``in_channels`` channels
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        mode: Mode = "hnp",
        hidden_channels: Sequence[int] = (16, 16, 5),
        head_hidden: Sequence[int] = (1000,),
        out_features: int = 1,
        in_channels: int = 1,
        io_encoding: IOEncoding | Literal["auto"] | None = "auto",
        fourier_features: int | None = None,
        fourier_scale: float = 10.0,
        dropout: float = 0.0,
        activation: ActivationArg = "relu",
        channel_dropout: float = 0.0,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        check_mode(mode)
        _check_channel_dropout(channel_dropout, "InvariantNFN")
        if pool not in POOLS:
            raise ValueError(f"InvariantNFN: pool must be one of {POOLS}, got {pool!r}")
        if not hidden_channels:
            raise ValueError("InvariantNFN: hidden_channels needs at least one NF-Layer width")
        self.spec, self.mode = spec, mode
        self.in_channels, self.out_features = in_channels, out_features
        front, channels = _front_end(
            spec, mode, in_channels, io_encoding, fourier_features, "InvariantNFN", fourier_scale
        )
        widths = [channels, *hidden_channels]
        layers = _nf_layers(spec, mode, widths, activation, True, channel_dropout)
        self.encoder = nn.Sequential(*front, *layers)
        if pool == "stats":
            self.pool: nn.Module = StatsPool(spec, mode)
        else:
            self.pool = NPPool(spec) if mode == "np" else HNPPool(spec)
        self.head = MLPHead(
            self.pool.output_size(hidden_channels[-1]), head_hidden, out_features, dropout
        )

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        return self.head(self.pool(_encode(self.encoder, x)))

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec}, mode={self.mode!r}, in_channels={self.in_channels}, "
            f"out_features={self.out_features}, params={_num_params(self)}"
        )


class EquivariantNFN(nn.Module):
    """Equivariant NFN: [IO encoding] → NF-Layers with activations between them.

    Maps each network's weights to features of the same shape with ``out_channels`` channels,
    e.g. an additive edit ``U + γ · NFN(U)`` of the network (the paper's INR editing).

    Parameters
    ----------
    spec:
        The weight space of the input networks.
    mode:
        ``"hnp"`` (:class:`~weightspace.nn.HNPLinear`), ``"np"``
        (:class:`~weightspace.nn.NPLinear`) or ``"pt"`` (:class:`~weightspace.nn.PointwiseLinear`,
        the paper's NFN_PT baseline, equivariant to every permutation of rows and columns).
    hidden_channels:
        Output channels of the NF-Layers before the last one; a final NF-Layer maps to
        ``out_channels``, so there are ``len(hidden_channels) + 1`` layers (the default, 3 layers
        of 128 channels, is the paper's INR-editing model).
    in_channels, out_channels:
        Channels of the input and output features.
    io_encoding:
        ``"learned"``, ``"sinusoidal"`` or ``None``; allowed under ``"np"`` and ``"pt"``. The
        default ``"auto"`` is sinusoidal under NP and none otherwise.
    activation:
        Entrywise nonlinearity between NF-Layers (none after the last).
    channel_dropout:
        Probability of a :class:`~weightspace.nn.ChannelDropout` after each activation between
        NF-Layers (none after the last layer; no module when 0).
    fourier_features, fourier_scale:
        Gaussian Fourier features of each input entry
        (:class:`~weightspace.nn.GaussianFourierFeatures` with ``fourier_features`` frequencies
        of scale ``fourier_scale``) before the IO encoding; ``None``: the entries as they are.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with ``in_channels`` channels
    - output: the same shapes with ``out_channels`` channels
    """

    def __init__(
        self,
        spec: NetworkSpec,
        mode: Mode | Literal["pt"] = "hnp",
        hidden_channels: Sequence[int] = (128, 128),
        in_channels: int = 1,
        out_channels: int = 1,
        io_encoding: IOEncoding | Literal["auto"] | None = "auto",
        activation: ActivationArg = "relu",
        channel_dropout: float = 0.0,
        fourier_features: int | None = None,
        fourier_scale: float = 10.0,
    ) -> None:
        super().__init__()
        _check_channel_dropout(channel_dropout, "EquivariantNFN")
        if mode not in _LAYERS:
            raise ValueError(f"EquivariantNFN: mode must be one of {tuple(_LAYERS)}, got {mode!r}")
        self.spec, self.mode = spec, mode
        self.in_channels, self.out_channels = in_channels, out_channels
        front, channels = _front_end(
            spec, mode, in_channels, io_encoding, fourier_features, "EquivariantNFN", fourier_scale
        )
        widths = [channels, *hidden_channels, out_channels]
        layers = _nf_layers(spec, mode, widths, activation, False, channel_dropout)
        self.layers = nn.Sequential(*front, *layers)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        return _encode(self.layers, x)

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec}, mode={self.mode!r}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, params={_num_params(self)}"
        )
