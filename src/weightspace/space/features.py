"""Weight-space features: one tensor per W_i and b_i, with batch and channel axes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from weightspace.space.spec import NetworkSpec, weight_layers

Perms = Sequence[Tensor | None]


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


class WeightSpaceFeatures:
    """Features on a weight space: W_i of shape (B, C, n_i, n_{i-1}, *kernel), b_i of (B, C, n_i).

    The input of an NFN is a batch of networks' own weights, with C = 1. The constructor
    validates every tensor against the others (and against ``spec`` when given) and names the
    tensor that is wrong.

    Parameters
    ----------
    weights:
        ``[W_1, …, W_L]``, each ``(B, C, n_i, n_{i-1}, *kernel_i)``.
    biases:
        ``[b_1, …, b_L]``, each ``(B, C, n_i)``.
    spec:
        Optional: the weight space the tensors must match exactly.

    Shapes
    ------
    All tensors share B (networks), C (channels), dtype and device.
    """

    __slots__ = ("biases", "weights")

    def __init__(
        self,
        weights: Sequence[Tensor],
        biases: Sequence[Tensor],
        spec: NetworkSpec | None = None,
    ) -> None:
        weights, biases = tuple(weights), tuple(biases)
        _validate(weights, biases, spec)
        self.weights: tuple[Tensor, ...] = weights
        self.biases: tuple[Tensor, ...] = biases

    # ---------------------------------------------------------------- derived
    @property
    def spec(self) -> NetworkSpec:
        """The weight space these features live on."""
        widths = (self.weights[0].shape[3],) + tuple(w.shape[2] for w in self.weights)
        return NetworkSpec(widths, tuple(tuple(w.shape[4:]) for w in self.weights))

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def channels(self) -> int:
        return self.weights[0].shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """All tensors in :attr:`NetworkSpec.tensors` order: W_1..W_L, then b_1..b_L."""
        return self.weights + self.biases

    @classmethod
    def from_tensors(
        cls, tensors: Sequence[Tensor], spec: NetworkSpec | None = None
    ) -> WeightSpaceFeatures:
        """Inverse of :attr:`tensors`: the first half are weights, the second half biases."""
        if len(tensors) % 2:
            raise ValueError(
                f"WeightSpaceFeatures.from_tensors needs 2L tensors, got {len(tensors)}"
            )
        half = len(tensors) // 2
        return cls(tensors[:half], tensors[half:], spec)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over ``(W_i, b_i)`` pairs."""
        return iter(zip(self.weights, self.biases))

    def __len__(self) -> int:
        return self.num_layers

    def __repr__(self) -> str:
        shapes = ", ".join(f"W{i + 1}={_shape(w)}" for i, w in enumerate(self.weights))
        return f"WeightSpaceFeatures({shapes}, dtype={self.dtype}, device={self.device})"

    # ------------------------------------------------------------ group action
    def permute(self, perms: Perms) -> WeightSpaceFeatures:
        """Apply a group element: a permutation of the neurons of each layer.

        Parameters
        ----------
        perms:
            L + 1 entries, one per layer 0..L. Entry i is ``None`` (identity), a LongTensor of
            shape ``(n_i,)`` applied to every network, or ``(B, n_i)``, one per network.

        Returns
        -------
        Features with ``W'_i[..., j, k] = W_i[..., σ_i[j], σ_{i-1}[k]]`` and ``b'_i[..., j] =
        b_i[..., σ_i[j]]``. A network permuted this way computes the same function.
        """
        perms = check_perms(self.spec, perms, self.batch_size)
        weights = []
        for i, w in enumerate(self.weights, start=1):
            w = _permute_axis(w, perms[i], 2)
            weights.append(_permute_axis(w, perms[i - 1], 3))
        biases = [_permute_axis(b, perms[i], 2) for i, b in enumerate(self.biases, start=1)]
        return WeightSpaceFeatures(weights, biases)

    # ------------------------------------------------------------- arithmetic
    def map(self, fn: Callable[[Tensor], Tensor]) -> WeightSpaceFeatures:
        """Apply ``fn`` to every tensor (e.g. an entrywise activation)."""
        return WeightSpaceFeatures([fn(w) for w in self.weights], [fn(b) for b in self.biases])

    def to(self, *args: Any, **kwargs: Any) -> WeightSpaceFeatures:
        """``Tensor.to`` on every tensor (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> WeightSpaceFeatures:
        return self.map(Tensor.detach)

    def _zip(
        self, other: WeightSpaceFeatures | float | Tensor, op: Callable[[Tensor, Any], Tensor]
    ):
        if isinstance(other, WeightSpaceFeatures):
            if other.spec != self.spec:
                raise ValueError(
                    f"cannot combine features on {self.spec} with features on {other.spec}"
                )
            return WeightSpaceFeatures.from_tensors(
                [op(a, b) for a, b in zip(self.tensors, other.tensors)]
            )
        return self.map(lambda t: op(t, other))

    def __add__(self, other: WeightSpaceFeatures | float | Tensor) -> WeightSpaceFeatures:
        return self._zip(other, torch.add)

    __radd__ = __add__

    def __sub__(self, other: WeightSpaceFeatures | float | Tensor) -> WeightSpaceFeatures:
        return self._zip(other, torch.sub)

    def __mul__(self, other: WeightSpaceFeatures | float | Tensor) -> WeightSpaceFeatures:
        return self._zip(other, torch.mul)

    __rmul__ = __mul__

    def __neg__(self) -> WeightSpaceFeatures:
        return self.map(torch.neg)

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> WeightSpaceFeatures:
        """Select networks along the batch axis. An int keeps a batch axis of size 1."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return self.map(lambda t: t[index])

    def flatten(self) -> Tensor:
        """All entries of each network in one vector: ``(B, C * num_params)``."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in self.tensors], dim=1)

    @classmethod
    def from_flat(cls, flat: Tensor, spec: NetworkSpec, channels: int = 1) -> WeightSpaceFeatures:
        """Inverse of :meth:`flatten`: ``(B, channels * spec.num_params)`` → features on ``spec``."""
        size = channels * spec.num_params
        if not isinstance(flat, Tensor) or flat.ndim != 2 or flat.shape[1] != size:
            shape = tuple(flat.shape) if isinstance(flat, Tensor) else type(flat).__name__
            raise ValueError(
                f"WeightSpaceFeatures.from_flat: got shape {shape}; expected (B, {size}) for "
                f"{channels} channel(s) on {spec}"
            )
        sizes = [channels * t.numel for t in spec.tensors]
        parts = torch.split(flat, sizes, dim=1)
        b = flat.shape[0]
        tensors = [p.reshape(b, channels, *t.shape) for p, t in zip(parts, spec.tensors)]
        return cls.from_tensors(tensors, spec)

    # --------------------------------------------------- to and from modules
    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module]) -> WeightSpaceFeatures:
        """Stack the weights of feedforward modules with one architecture (C = 1).

        Layers built with ``bias=False`` get zero biases.
        """
        if isinstance(modules, nn.Module):
            modules = [modules]
        if not modules:
            raise ValueError("WeightSpaceFeatures.from_modules needs at least one module")
        traced = [list(weight_layers(module)) for module in modules]  # one trace per module
        spec = NetworkSpec.from_layers(traced[0])
        per_layer: list[list[tuple[Tensor, Tensor]]] = []
        for m, (module, module_layers) in enumerate(zip(modules, traced)):
            other = NetworkSpec.from_layers(module_layers)
            if other != spec:
                raise ValueError(
                    f"WeightSpaceFeatures.from_modules: modules[{m}] has weight space {other}, "
                    f"but modules[0] has {spec}"
                )
            layers = []
            dtypes = {p.dtype for p in module.parameters()} | {
                p.dtype for p in modules[0].parameters()
            }
            if len(dtypes) > 1:
                raise ValueError(
                    f"WeightSpaceFeatures.from_modules: modules[{m}] mixes dtypes {sorted(map(str, dtypes))} "
                    "with modules[0]; cast them to one dtype first"
                )
            for _, layer in module_layers:
                w = layer.weight.detach()
                b = layer.bias.detach() if layer.bias is not None else w.new_zeros(w.shape[0])
                layers.append((w, b))
            per_layer.append(layers)
        weights = [
            torch.stack([net[i][0] for net in per_layer]).unsqueeze(1)
            for i in range(spec.num_layers)
        ]
        biases = [
            torch.stack([net[i][1] for net in per_layer]).unsqueeze(1)
            for i in range(spec.num_layers)
        ]
        return cls(weights, biases, spec)

    @classmethod
    def from_state_dicts(
        cls,
        state_dicts: Sequence[Mapping[str, Tensor]],
        spec: NetworkSpec | None = None,
        *,
        template: nn.Module | None = None,
        names: Sequence[str] | None = None,
    ) -> WeightSpaceFeatures:
        """Stack state dicts of one architecture (C = 1).

        With a ``template`` module of the architecture, each state dict is read by the template's
        own key names, in the template's (traced) layer order, whatever the order of its keys:
        every weight and bias key must be present, and no other key. Without one, entries are
        read in order: each tensor with two or more axes starts a layer (its weight,
        ``(n_i, n_{i-1}, *kernel)``); a 1-D tensor right after it is its bias. A layer without
        a bias gets zeros.

        ``names`` (one per state dict, e.g. file names) label the errors; the default is
        ``state_dicts[n]``.

        Raises
        ------
        ValueError
            Naming the state dict and key: a missing or unexpected key, a tensor of the wrong
            shape for the template, or architectures that differ between state dicts.
        TypeError
            For an entry that is not a tensor.
        """
        if not state_dicts:
            raise ValueError("WeightSpaceFeatures.from_state_dicts needs at least one state dict")
        labels = (
            [f"state_dicts[{n}]" for n in range(len(state_dicts))] if names is None else list(names)
        )
        if len(labels) != len(state_dicts):
            raise ValueError(
                f"WeightSpaceFeatures.from_state_dicts: {len(labels)} names for "
                f"{len(state_dicts)} state dicts"
            )
        if template is not None:
            layers = list(weight_layers(template))
            t_spec = NetworkSpec.from_layers(layers)
            if spec is not None and spec != t_spec:
                raise ValueError(
                    f"WeightSpaceFeatures.from_state_dicts: template has weight space {t_spec}, "
                    f"but spec is {spec}"
                )
            spec = t_spec
            keys = _layer_keys(layers)
            parsed = [
                _read_by_keys(sd, keys, spec, label) for sd, label in zip(state_dicts, labels)
            ]
        else:
            parsed = [_parse_state_dict(sd, label) for sd, label in zip(state_dicts, labels)]
        first = [tuple(w.shape) for w, _ in parsed[0]]
        for n, layers in enumerate(parsed[1:], start=1):
            shapes = [tuple(w.shape) for w, _ in layers]
            if shapes != first:
                raise ValueError(
                    f"WeightSpaceFeatures.from_state_dicts: {labels[n]} has weight shapes "
                    f"{shapes}, but {labels[0]} has {first}"
                )
        L = len(first)
        weights = [torch.stack([p[i][0] for p in parsed]).unsqueeze(1) for i in range(L)]
        biases = [torch.stack([p[i][1] for p in parsed]).unsqueeze(1) for i in range(L)]
        return cls(weights, biases, spec)

    def state_dict_keys(
        self, template: nn.Module | Sequence[str] | None = None
    ) -> list[tuple[str, str | None]]:
        """``(weight_key, bias_key)`` per layer for :meth:`to_state_dicts`.

        From a module (its own names; ``None`` for a layer built without a bias), from a list of
        2L names in (weight, bias) order, or ``"{i}.weight"`` / ``"{i}.bias"`` by default.
        """
        L = self.num_layers
        if template is None:
            return [(f"{i}.weight", f"{i}.bias") for i in range(L)]
        if isinstance(template, nn.Module):
            layers = list(weight_layers(template))
            spec = NetworkSpec.from_layers(layers)
            if spec != self.spec:
                raise ValueError(
                    f"template module has weight space {spec}, features have {self.spec}"
                )
            return _layer_keys(layers)
        keys = list(template)
        if len(keys) != 2 * L:
            raise ValueError(
                f"state dict keys: expected {2 * L} names (weight, bias per layer), got {len(keys)}"
            )
        return [(keys[2 * i], keys[2 * i + 1]) for i in range(L)]

    def to_state_dicts(
        self, template: nn.Module | Sequence[str] | None = None
    ) -> list[dict[str, Tensor]]:
        """One state dict per network (C must be 1), keyed as in ``template``.

        ``template`` is a module of this architecture (its own key names are used; a layer built
        without a bias gets no bias key, and its bias must be zero), a list of 2L names in
        (weight, bias) order per layer, or ``None`` for ``"{i}.weight"``/``"{i}.bias"``.
        """
        if self.channels != 1:
            raise ValueError(f"to_state_dicts needs 1-channel features, these have {self.channels}")
        keys = self.state_dict_keys(template)
        for i, (_, bias_key) in enumerate(keys):
            if bias_key is None and self.biases[i].abs().max() > 0:
                raise ValueError(
                    f"to_state_dicts: layer {i + 1} of the template has no bias but b{i + 1} is nonzero"
                )
        out = []
        for n in range(self.batch_size):
            sd: dict[str, Tensor] = {}
            for (w_key, b_key), (w, b) in zip(keys, self):
                sd[w_key] = w[n, 0]
                if b_key is not None:
                    sd[b_key] = b[n, 0]
            out.append(sd)
        return out

    @torch.no_grad()
    def load_into(self, module: nn.Module, index: int = 0) -> nn.Module:
        """Copy network ``index`` into ``module`` (in place) and return it."""
        if self.channels != 1:
            raise ValueError(f"load_into needs 1-channel features, these have {self.channels}")
        layers = list(weight_layers(module))
        spec = NetworkSpec.from_layers(layers)
        if spec != self.spec:
            raise ValueError(
                f"load_into: module has weight space {spec}, features have {self.spec}"
            )
        for (name, layer), (w, b) in zip(layers, self):
            layer.weight.copy_(w[index, 0])
            if layer.bias is not None:
                layer.bias.copy_(b[index, 0])
            elif b[index, 0].abs().max() > 0:
                raise ValueError(f"load_into: layer {name!r} has no bias but b is nonzero")
        return module

    @staticmethod
    def cat(items: Sequence[WeightSpaceFeatures]) -> WeightSpaceFeatures:
        """Concatenate along the batch axis."""
        if not items:
            raise ValueError("WeightSpaceFeatures.cat needs at least one item")
        spec = items[0].spec
        for n, item in enumerate(items):
            if not isinstance(item, WeightSpaceFeatures) or item.spec != spec:
                raise ValueError(f"WeightSpaceFeatures.cat: items[{n}] is not on {spec}")
        columns = zip(*(item.tensors for item in items))
        return WeightSpaceFeatures.from_tensors([torch.cat(col) for col in columns])

    def cat_channels(self, other: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """Concatenate along the channel axis."""
        return self._zip(other, lambda a, b: torch.cat([a, b], dim=1))


def check_features(x: object, spec: NetworkSpec, channels: int, who: str) -> WeightSpaceFeatures:
    """Check that ``x`` is features on ``spec`` with ``channels`` channels, naming ``who`` if not.

    Used by every layer and model on its input; returns ``x`` for convenience.
    """
    if not isinstance(x, WeightSpaceFeatures):
        raise TypeError(f"{who}: expected WeightSpaceFeatures, got {type(x).__name__}")
    if x.spec != spec:
        raise ValueError(f"{who}: built for {spec}, got features on {x.spec}")
    if x.channels != channels:
        raise ValueError(f"{who}: expected {channels} input channels, got {x.channels}")
    return x


def module_keys(module: nn.Module) -> list[tuple[str, str | None]]:
    """``(weight_key, bias_key)`` of each weight layer of ``module``, in its (traced) layer order.

    The keys are the module's own state-dict names; ``bias_key`` is ``None`` for a layer built
    without a bias.
    """
    return _layer_keys(weight_layers(module))


def _layer_keys(layers: Iterable[tuple[str, nn.Module]]) -> list[tuple[str, str | None]]:
    return [
        (_join(name, "weight"), None if layer.bias is None else _join(name, "bias"))
        for name, layer in layers
    ]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def collate(batch: Sequence[Any]) -> Any:
    """``collate_fn`` for a DataLoader whose items contain :class:`WeightSpaceFeatures`.

    Features are concatenated along the batch axis (items carry a batch axis of 1, as
    ``features[i]`` gives); tuples, lists and dicts are collated per field; anything else goes to
    ``torch.utils.data.default_collate``.
    """
    first = batch[0]
    if isinstance(first, WeightSpaceFeatures):
        return WeightSpaceFeatures.cat(batch)
    if isinstance(first, tuple | list):
        return type(first)(collate(list(field)) for field in zip(*batch))
    if isinstance(first, Mapping):
        return {key: collate([item[key] for item in batch]) for key in first}
    return torch.utils.data.default_collate(batch)


# ------------------------------------------------------------------ helpers
def check_perms(
    spec: NetworkSpec, perms: Perms, batch_size: int | None = None
) -> list[Tensor | None]:
    """Validate a group element: L + 1 permutations, entry i of size n_i (or None)."""
    perms = list(perms)
    if len(perms) != spec.num_layers + 1:
        raise ValueError(
            f"permutation: expected {spec.num_layers + 1} entries (layers 0..L), got {len(perms)}"
        )
    for i, p in enumerate(perms):
        if p is None:
            continue
        if not isinstance(p, Tensor) or p.dtype != torch.long:
            raise TypeError(
                f"permutation of layer {i}: expected a LongTensor or None, got {type(p).__name__}"
            )
        n = spec.widths[i]
        if (
            p.ndim not in (1, 2)
            or p.shape[-1] != n
            or (p.ndim == 2 and batch_size not in (None, p.shape[0]))
        ):
            raise ValueError(
                f"permutation of layer {i}: expected shape ({n},) or (B={batch_size}, {n}), "
                f"got {tuple(p.shape)}"
            )
        if not torch.equal(p.sort(dim=-1).values, torch.arange(n, device=p.device).expand_as(p)):
            raise ValueError(f"permutation of layer {i} is not a permutation of 0..{n - 1}")
    return perms


def _permute_axis(x: Tensor, perm: Tensor | None, axis: int) -> Tensor:
    if perm is None:
        return x
    perm = perm.to(x.device)
    if perm.ndim == 1:
        return x.index_select(axis, perm)
    shape = [perm.shape[0]] + [1] * (x.ndim - 1)
    shape[axis] = perm.shape[1]
    index = perm.reshape(shape).expand(*x.shape[:axis], perm.shape[1], *x.shape[axis + 1 :])
    return x.gather(axis, index)


def _read_by_keys(
    sd: Mapping[str, Tensor],
    keys: Sequence[tuple[str, str | None]],
    spec: NetworkSpec,
    where: str,
) -> list[tuple[Tensor, Tensor]]:
    """One state dict read by a template's ``(weight_key, bias_key)`` per layer, checked."""
    if not isinstance(sd, Mapping):
        raise TypeError(
            f"{where}: expected a state dict (a mapping of names to tensors), got {type(sd).__name__}"
        )
    wanted = [k for pair in keys for k in pair if k is not None]
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing} of the template; it has {sorted(sd)[:8]}"
        )
    extra = sorted(set(sd) - set(wanted))
    if extra:
        raise ValueError(
            f"{where}: unexpected key(s) {extra[:8]}; the template's weight space has only {wanted}"
        )
    out = []
    for (w_key, b_key), w_spec, b_spec in zip(
        keys, spec.tensors[: spec.num_layers], spec.tensors[spec.num_layers :]
    ):
        tensors = [(w_key, w_spec.shape)] + ([(b_key, b_spec.shape)] if b_key else [])
        for key, shape in tensors:
            value = sd[key]
            if not isinstance(value, Tensor):
                raise TypeError(f"{where}[{key!r}]: expected a tensor, got {type(value).__name__}")
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"{where}[{key!r}]: shape {tuple(value.shape)}, expected {shape} for "
                    f"{w_spec.name if key == w_key else b_spec.name} of {spec}"
                )
        w = sd[w_key].detach()
        b = sd[b_key].detach() if b_key else w.new_zeros(w.shape[0])
        out.append((w, b))
    return out


def _parse_state_dict(sd: Mapping[str, Tensor], where: str) -> list[tuple[Tensor, Tensor]]:
    layers: list[list[Tensor]] = []
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{where}[{key!r}]: expected a tensor, got {type(value).__name__}")
        if value.ndim >= 2:
            layers.append([value])
        elif (
            value.ndim == 1
            and layers
            and len(layers[-1]) == 1
            and value.shape[0] == layers[-1][0].shape[0]
        ):
            layers[-1].append(value)
        else:
            expected = f"a bias of length {layers[-1][0].shape[0]}" if layers else "a weight"
            raise ValueError(
                f"{where}[{key!r}]: shape {tuple(value.shape)} does not fit a feedforward layer; "
                f"expected {expected} or the next layer's weight (n_i, n_(i-1), *kernel)"
            )
    if not layers:
        raise ValueError(f"{where} holds no weight tensor")
    out = []
    for layer in layers:
        w = layer[0].detach()
        b = layer[1].detach() if len(layer) == 2 else w.new_zeros(w.shape[0])
        out.append((w, b))
    return out


def _validate(
    weights: tuple[Tensor, ...], biases: tuple[Tensor, ...], spec: NetworkSpec | None
) -> None:
    where = "WeightSpaceFeatures"
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(
            f"{where}: need one weight and one bias per layer (L >= 1), got {len(weights)} "
            f"weights and {len(biases)} biases"
        )
    for name, t in [(f"W{i + 1}", w) for i, w in enumerate(weights)] + [
        (f"b{i + 1}", b) for i, b in enumerate(biases)
    ]:
        if not isinstance(t, Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if spec is not None and spec.num_layers != len(weights):
        raise ValueError(f"{where}: {spec} has {spec.num_layers} layers, got {len(weights)}")
    ref = weights[0]
    if ref.ndim < 4:
        raise ValueError(
            f"{where}: W1 has shape {_shape(ref)}, expected (B, C, n_1, n_0, *kernel) with at least 4 axes"
        )
    B, C = ref.shape[:2]
    prev = ref.shape[3]
    for i, (w, b) in enumerate(zip(weights, biases), start=1):
        for name, t in ((f"W{i}", w), (f"b{i}", b)):
            if t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError(
                    f"{where}: {name} is {t.dtype} on {t.device}, but W1 is {ref.dtype} on {ref.device}"
                )
            if t.ndim >= 2 and tuple(t.shape[:2]) != (B, C):
                raise ValueError(
                    f"{where}: {name} has batch and channels {tuple(t.shape[:2])}, but W1 has ({B}, {C}); "
                    "mixed batch sizes or channel counts are refused"
                )
        if spec is not None:
            t_spec = spec.tensors[i - 1]
            expected_w = (B, C, *t_spec.shape)
        else:
            expected_w = (B, C, w.shape[2] if w.ndim > 2 else "n_i", prev, *w.shape[4:])
        if w.ndim < 4 or w.ndim > 7 or tuple(w.shape) != expected_w:
            raise ValueError(f"{where}: W{i} has shape {_shape(w)}, expected {expected_w}")
        n = w.shape[2]
        if tuple(b.shape) != (B, C, n):
            raise ValueError(f"{where}: b{i} has shape {_shape(b)}, expected ({B}, {C}, {n})")
        prev = n
    if spec is not None and weights[0].shape[3] != spec.widths[0]:
        raise ValueError(
            f"{where}: W1 has {weights[0].shape[3]} inputs, {spec} expects {spec.widths[0]}"
        )
