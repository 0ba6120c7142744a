"""A conditional VAE in weight space that predicts winning-ticket masks from an initialisation.

The paper's fourth experiment (``shared/PAPER.md`` §4): given a freshly initialised MLP, predict
the sparse mask that iterative magnitude pruning would find after a full training run.

- The encoder ``q(z | init, mask)`` is an :class:`~weightspace.models.EquivariantNFN` on the two
  channels ``(init, mask)``; its ``2·latent_channels`` output channels are the mean and the
  log-variance of ``z``, itself weight-space features with ``latent_channels`` channels.
- The decoder ``p(mask | init, z)`` is an :class:`~weightspace.models.EquivariantNFN` on
  ``(init, z)``, with one Bernoulli logit per entry; the biases' logits exist (the layers make
  them) but are ignored, since biases are always kept.
- Prediction samples ``z`` from the prior ``N(0, I)``, decodes it and keeps the top
  ``1 - sparsity`` of all weight logits of a network (:func:`top_k_mask`, global over layers
  like global magnitude pruning).

Both stacks are equivariant to the group of their mode (HNP, NP up to the IO encoding, or every
row and column permutation of each tensor for ``"pt"``): permuting the hidden neurons of the
init permutes the predicted mask the same way. The init is standardised per tensor by scalars
measured on the training inits (:meth:`MaskVAE.set_statistics`), which commutes with all of
these permutations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.models.nfn import EquivariantNFN, IOEncoding
from weightspace.models.standardize import Standardized
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import Mode, NetworkSpec

__all__ = ["MaskVAE", "allocated_top_k", "budgeted_mask", "check_mask", "mask_elbo", "mask_iou"]
__all__ += ["sampled_top_k", "top_k_mask"]


def _check_positive_int(value: object, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return value


def _check_finite(x: WeightSpaceFeatures, what: str, who: str) -> None:
    """Name the first tensor of ``x`` that holds NaN or inf."""
    for t, name in zip(x.tensors, _names(x)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{who}: {what} {name} holds NaN or inf entries; expected finite")


def _names(x: WeightSpaceFeatures) -> list[str]:
    return [f"W{i + 1}" for i in range(x.num_layers)] + [f"b{i + 1}" for i in range(x.num_layers)]


def check_mask(mask: object, spec: NetworkSpec, who: str) -> WeightSpaceFeatures:
    """Check that ``mask`` is 1-channel features on ``spec`` holding only 0 and 1.

    Returns ``mask``; the ValueError names the first tensor with another value.
    """
    mask = check_features(mask, spec, 1, f"{who}: mask")
    for t, name in zip(mask.tensors, _names(mask)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{who}: mask {name} holds NaN or inf; expected only 0 and 1")
        if not ((t == 0) | (t == 1)).all():
            bad = t[(t != 0) & (t != 1)].flatten()[0].item()
            raise ValueError(f"{who}: mask {name} is not binary (holds {bad!r}); expected 0 or 1")
    return mask


def _split_channels(x: WeightSpaceFeatures, at: int) -> tuple[WeightSpaceFeatures, ...]:
    return x.map(lambda t: t[:, :at]), x.map(lambda t: t[:, at:])


class MaskVAE(nn.Module):
    """Conditional VAE of NF-Layers: ``q(z | init, mask)`` and ``p(mask | init, z)``.

    Parameters
    ----------
    spec:
        The weight space of the networks (dense MLPs in the paper's setting).
    mode:
        ``"np"`` (:class:`~weightspace.nn.NPLinear`, with a sinusoidal IO encoding by default:
        NFN_NP), ``"hnp"`` (:class:`~weightspace.nn.HNPLinear`: NFN_HNP) or ``"pt"``
        (:class:`~weightspace.nn.PointwiseLinear` only: the paper's NFN_PT baseline). HNP keeps
        input and output neurons apart, so its layers hold dense maps over them: on the paper's
        784 → 128 → 128 → 10 MLP one :class:`~weightspace.nn.HNPLinear` with C channels in and
        out has about 1.27 M · C² parameters, against about 63 · C² for NP; the paper's
        ticket table has NP and PT only.
    hidden_channels:
        Widths of the NF-Layers before the last one of each stack; each stack has
        ``len(hidden_channels) + 1`` layers (the default: 4, as in the paper, which used 64
        channels).
    latent_channels:
        Channels of ``z`` (5 in the paper).
    io_encoding:
        Passed to both :class:`~weightspace.models.EquivariantNFN` stacks; ``"auto"`` is
        sinusoidal under NP and none otherwise.
    prior_seed:
        Seed of the prior sample used by ``model(init)`` in eval mode, so that predictions are
        deterministic. ``None`` decodes the prior's mean ``z = 0`` instead: also deterministic,
        and then the predictions themselves are equivariant (a seeded sample is not permuted
        with the init, so its predictions are equivariant only in distribution).
    magnitude:
        Also feed both stacks ``|x|``, the magnitude of the standardised init, as a second init
        channel. Magnitude pruning keeps large trained weights, which tend to be the large
        initial ones (on the MNIST ticket set mostly in W2 and W3: RESULTS.md); with ReLU layers
        a stack can build ``|x|`` from ``x`` only by learning it. Entrywise, so every symmetry
        is kept.

    Attributes
    ----------
    encoder, decoder:
        The two :class:`~weightspace.models.EquivariantNFN` stacks.
    standardize:
        A :class:`~weightspace.models.Standardized` identity whose ``shift``/``scale`` buffers
        standardise the init per tensor; the identity until :meth:`set_statistics`.

    Shapes
    ------
    - init, mask: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel, ``B`` networks
    - mean, logvar, z: on ``spec`` with ``latent_channels`` channels
    - logits: on ``spec`` with 1 channel

    Examples
    --------
    >>> from weightspace import NetworkSpec
    >>> from weightspace.testing import random_features
    >>> spec = NetworkSpec((5, 4, 3, 2))
    >>> vae = MaskVAE(spec, "hnp", hidden_channels=(8, 8)).eval()
    >>> init = random_features(spec, 2, dtype=torch.float32)
    >>> top_k_mask(vae(init), 0.9).weights[0].shape
    torch.Size([2, 1, 4, 5])
    """

    def __init__(
        self,
        spec: NetworkSpec,
        mode: Mode | Literal["pt"] = "hnp",
        hidden_channels: Sequence[int] = (32, 32, 32),
        latent_channels: int = 5,
        io_encoding: IOEncoding | Literal["auto"] | None = "auto",
        prior_seed: int | None = 0,
        magnitude: bool = False,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        _check_positive_int(latent_channels, "latent_channels", who)
        if isinstance(hidden_channels, str | int) or not isinstance(hidden_channels, Sequence):
            raise ValueError(
                f"{who}: hidden_channels must be a sequence of positive integers, got "
                f"{hidden_channels!r}"
            )
        if not hidden_channels:
            raise ValueError(f"{who}: hidden_channels needs at least one width, got ()")
        for c in hidden_channels:
            _check_positive_int(c, "every entry of hidden_channels", who)
        if prior_seed is not None and (
            isinstance(prior_seed, bool) or not isinstance(prior_seed, int)
        ):
            raise ValueError(f"{who}: prior_seed must be an integer or None, got {prior_seed!r}")
        self.spec, self.mode = spec, mode
        self.hidden_channels = tuple(hidden_channels)
        self.latent_channels, self.prior_seed = latent_channels, prior_seed
        if not isinstance(magnitude, bool):
            raise ValueError(f"{who}: magnitude must be True or False, got {magnitude!r}")
        self.magnitude = magnitude
        init_channels = 2 if magnitude else 1
        self.standardize = Standardized(nn.Identity(), spec)
        self.encoder = EquivariantNFN(
            spec,
            mode,
            hidden_channels,
            init_channels + 1,
            2 * latent_channels,
            io_encoding=io_encoding,
        )
        self.decoder = EquivariantNFN(
            spec,
            mode,
            hidden_channels,
            init_channels + latent_channels,
            1,
            io_encoding=io_encoding,
        )
        # One learned logit offset per weight tensor, added to the decoder's logits: the same
        # for every entry of a tensor, so it keeps every symmetry. set_mask_prior starts it at
        # the log-odds of the training masks' kept share, so training starts from the per-layer
        # base rates instead of spending its first epochs finding them.
        self.logit_offset = nn.Parameter(torch.zeros(spec.num_layers))

    # ----------------------------------------------------------------- inputs
    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Measure each tensor's mean and std of the init on ``features`` (the training inits)."""
        _check_finite(features, "init", f"{type(self).__name__}.set_statistics")
        self.standardize.set_statistics(features)

    def set_mask_prior(self, masks: WeightSpaceFeatures) -> None:
        """Start each weight tensor's logit offset at the log-odds of its kept share in
        ``masks`` (the training masks), clamped to [1e-4, 1 - 1e-4]."""
        masks = check_mask(masks, self.spec, f"{type(self).__name__}.set_mask_prior")
        density = torch.stack([w.double().mean() for w in masks.weights])
        with torch.no_grad():
            self.logit_offset.copy_(density.clamp(1e-4, 1 - 1e-4).logit())

    def _init(self, init: object, who: str) -> WeightSpaceFeatures:
        init = check_features(init, self.spec, 1, f"{who}: init")
        _check_finite(init, "init", who)
        x = self.standardize(init)
        return x.cat_channels(x.map(torch.abs)) if self.magnitude else x

    # ------------------------------------------------------------------ parts
    def encode(
        self, init: WeightSpaceFeatures, mask: WeightSpaceFeatures
    ) -> tuple[WeightSpaceFeatures, WeightSpaceFeatures]:
        """The posterior ``q(z | init, mask)``: its mean and log-variance.

        The mask's biases are read as 1 whatever they hold (biases are always kept).
        """
        who = f"{type(self).__name__}.encode"
        x = self._init(init, who)
        mask = check_mask(mask, self.spec, who)
        kept = WeightSpaceFeatures(
            [w.to(x.dtype) for w in mask.weights], [torch.ones_like(b[:, :1]) for b in x.biases]
        )
        out = self.encoder(x.cat_channels(kept))
        mean, logvar = _split_channels(out, self.latent_channels)
        return mean, logvar

    def decode(self, init: WeightSpaceFeatures, z: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """``p(mask | init, z)``: one Bernoulli logit per entry (1 channel)."""
        who = f"{type(self).__name__}.decode"
        x = self._init(init, who)
        z = check_features(z, self.spec, self.latent_channels, f"{who}: z")
        out = self.decoder(x.cat_channels(z.to(x.dtype)))
        offset = self.logit_offset.to(out.dtype)
        return WeightSpaceFeatures(
            [w + offset[i] for i, w in enumerate(out.weights)], list(out.biases), self.spec
        )

    def prior(
        self, init: WeightSpaceFeatures, generator: torch.Generator | None = None
    ) -> WeightSpaceFeatures:
        """``z ~ N(0, I)`` for every network of ``init``, drawn on ``generator``'s device (the
        global RNG when ``None``) and moved to the init's device."""
        b, c = init.batch_size, self.latent_channels
        device = generator.device if generator is not None else init.device
        tensors = [
            torch.randn(b, c, *t.shape, generator=generator, device=device, dtype=init.dtype)
            for t in self.spec.tensors
        ]
        return WeightSpaceFeatures.from_tensors(tensors, self.spec).to(init.device)

    def sample(
        self, init: WeightSpaceFeatures, generator: torch.Generator | None = None
    ) -> WeightSpaceFeatures:
        """Logits decoded from a prior sample of ``z``, one independent draw per network."""
        check_features(init, self.spec, 1, f"{type(self).__name__}.sample: init")
        return self.decode(init, self.prior(init, generator))

    def _eval_prior(self, init: WeightSpaceFeatures) -> WeightSpaceFeatures:
        # One draw, on the CPU, shared by every network: a network's prediction does not depend
        # on its batch or its place in it, nor on the device.
        if self.prior_seed is None:
            return WeightSpaceFeatures.from_tensors(
                [t.new_zeros(t.shape[0], self.latent_channels, *t.shape[2:]) for t in init.tensors]
            )
        gen = torch.Generator().manual_seed(self.prior_seed)
        one = self.prior(init[0].to("cpu"), gen)
        b = init.batch_size
        return one.map(lambda t: t.expand(b, *t.shape[1:])).to(init.device)

    # ---------------------------------------------------------------- forward
    @overload
    def forward(self, init: WeightSpaceFeatures, mask: None = None) -> WeightSpaceFeatures: ...

    @overload
    def forward(
        self, init: WeightSpaceFeatures, mask: WeightSpaceFeatures
    ) -> tuple[WeightSpaceFeatures, WeightSpaceFeatures, WeightSpaceFeatures]: ...

    def forward(
        self, init: WeightSpaceFeatures, mask: WeightSpaceFeatures | None = None
    ) -> WeightSpaceFeatures | tuple[WeightSpaceFeatures, WeightSpaceFeatures, WeightSpaceFeatures]:
        """With a mask (training): ``(logits, mean, logvar)``, decoded from the reparameterised
        posterior sample ``z = mean + exp(logvar / 2) · ε`` (``ε`` from the global RNG).

        Without one (prediction): the logits decoded from a prior sample. In train mode each
        network gets its own draw from the global RNG; in eval mode every call uses one draw from
        a generator seeded with ``prior_seed``, shared by all networks (or ``z = 0`` when
        ``prior_seed`` is ``None``), so predictions are deterministic and independent of
        batching.
        """
        check_features(init, self.spec, 1, f"{type(self).__name__}: init")
        if mask is None:
            z = self._eval_prior(init) if not self.training else self.prior(init)
            return self.decode(init, z)
        mean, logvar = self.encode(init, mask)
        z = mean + logvar.map(lambda t: (0.5 * t).exp()) * mean.map(torch.randn_like)
        return self.decode(init, z), mean, logvar

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec}, mode={self.mode!r}, hidden_channels={self.hidden_channels}, "
            f"latent_channels={self.latent_channels}, prior_seed={self.prior_seed}"
            + (", magnitude=True" if self.magnitude else "")
        )


# --------------------------------------------------------------------- loss
def mask_elbo(
    logits: WeightSpaceFeatures,
    mask: WeightSpaceFeatures,
    mean: WeightSpaceFeatures,
    logvar: WeightSpaceFeatures,
    kl_weight: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The negative ELBO per weight entry: ``loss = bce + kl_weight · kl``.

    - ``bce``: binary cross-entropy of the logits against the mask over the **weight entries
      only** (biases are always kept, their logits are ignored), averaged over entries and
      networks. Plain BCE, without a ``pos_weight``, although masks are ~5 % ones: it is the
      Bernoulli log-likelihood of the ELBO, and prediction keeps the top-k logits, which only
      needs their order, not a calibrated threshold.
    - ``kl``: ``KL(q(z | init, mask) || N(0, I))`` summed over latent channels and over **all**
      latent entries (weights and biases, since the bias latents feed the decoder too), divided
      by the number of weight entries and averaged over networks. Both terms are then per weight
      entry, so ``kl_weight = 1`` is exactly the ELBO.

    Parameters
    ----------
    logits:
        The decoder's output, 1 channel.
    mask:
        The target mask, 1 channel, 0 or 1 (its biases are not read).
    mean, logvar:
        The posterior's parameters, ``latent_channels`` channels each.
    kl_weight:
        Weight of the KL term (a warm-up schedule may raise it from 0).

    Returns
    -------
    ``(loss, bce, kl)``, three scalar tensors; ``loss`` carries the gradient.

    Shapes
    ------
    - logits, mask: 1-channel features on one spec with ``B`` networks
    - mean, logvar: ``C``-channel features on that spec with ``B`` networks
    """
    who = "mask_elbo"
    if isinstance(kl_weight, bool) or not isinstance(kl_weight, int | float):
        raise ValueError(f"{who}: kl_weight must be a number >= 0, got {kl_weight!r}")
    if not (math.isfinite(kl_weight) and kl_weight >= 0):
        raise ValueError(f"{who}: kl_weight must be a finite number >= 0, got {kl_weight!r}")
    if not isinstance(logits, WeightSpaceFeatures):
        raise TypeError(f"{who}: logits: expected WeightSpaceFeatures, got {type(logits).__name__}")
    spec = logits.spec
    check_features(logits, spec, 1, f"{who}: logits")
    check_mask(mask, spec, who)
    if not isinstance(mean, WeightSpaceFeatures):
        raise TypeError(f"{who}: mean: expected WeightSpaceFeatures, got {type(mean).__name__}")
    check_features(mean, spec, mean.channels, f"{who}: mean")
    check_features(logvar, spec, mean.channels, f"{who}: logvar")
    for name, x in (("mask", mask), ("mean", mean), ("logvar", logvar)):
        if x.batch_size != logits.batch_size:
            raise ValueError(
                f"{who}: {name} has {x.batch_size} networks, logits have {logits.batch_size}"
            )
    b = logits.batch_size
    flat_logits = torch.cat([w.reshape(b, -1) for w in logits.weights], dim=1)
    flat_mask = torch.cat([w.reshape(b, -1) for w in mask.weights], dim=1).to(flat_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(flat_logits, flat_mask)
    num_weights = flat_logits.shape[1]
    kl_sum = sum(
        (0.5 * (m.square() + lv.exp() - 1.0 - lv)).reshape(b, -1).sum(dim=1)
        for m, lv in zip(mean.tensors, logvar.tensors)
    )
    kl = (kl_sum / num_weights).mean()
    return bce + kl_weight * kl, bce, kl


# -------------------------------------------------------------- prediction
def _check_sparsity(sparsity: object, who: str) -> float:
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, int | float)
        or not 0.0 < sparsity < 1.0
    ):
        raise ValueError(f"{who}: sparsity must be a number in (0, 1), got {sparsity!r}")
    return float(sparsity)


def top_k_mask(logits: WeightSpaceFeatures, sparsity: float) -> WeightSpaceFeatures:
    """Keep the top ``1 - sparsity`` of all weight entries of each network, over all layers
    together (like global magnitude pruning); biases are all kept.

    Each network keeps exactly ``round((1 - sparsity) · num_weights)`` weights (at least one).
    Ties keep the entry that comes first in :meth:`WeightSpaceFeatures.flatten` order (W_1 row
    by row, then W_2, ...), so the mask is deterministic.

    Parameters
    ----------
    logits:
        Scores, higher is kept (decoder logits, or ``|init|`` for magnitude pruning); 1 channel.
    sparsity:
        The fraction of weights to prune, in ``(0, 1)``.

    Returns
    -------
    The mask, 0 or 1 in the dtype of ``logits``.

    Shapes
    ------
    - logits: 1-channel features on a spec with ``B`` networks
    - output: the same shapes
    """
    who = "top_k_mask"
    sparsity = _check_sparsity(sparsity, who)
    if not isinstance(logits, WeightSpaceFeatures):
        raise TypeError(f"{who}: expected WeightSpaceFeatures, got {type(logits).__name__}")
    spec = logits.spec
    check_features(logits, spec, 1, f"{who}: logits")
    for t, name in zip(logits.weights, _names(logits)):
        if t.is_floating_point() and torch.isnan(t).any():
            raise ValueError(f"{who}: logits {name} hold NaN; expected numbers to rank")
    b = logits.batch_size
    flat = torch.cat([w.reshape(b, -1) for w in logits.weights], dim=1)
    n = flat.shape[1]
    k = round((1.0 - sparsity) * n)
    if k < 1:
        raise ValueError(
            f"{who}: sparsity {sparsity} keeps no weight of the {n} in {spec}; lower it"
        )
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    kept = torch.zeros_like(flat, dtype=torch.bool)
    kept.scatter_(1, order[:, :k], True)
    dtype = flat.dtype if flat.is_floating_point() else torch.float32
    parts = torch.split(kept.to(dtype), [math.prod(s) for s in spec.weight_shapes], dim=1)
    weights = [p.reshape(b, 1, *s) for p, s in zip(parts, spec.weight_shapes)]
    biases = [torch.ones(b, 1, *s, dtype=dtype, device=flat.device) for s in spec.bias_shapes]
    return WeightSpaceFeatures(weights, biases, spec)


def layer_budgets(shares: Tensor, k: int, sizes: Sequence[int]) -> Tensor:
    """Split ``k`` kept weights over tensors in proportion to ``shares`` ``(B, L)``, no tensor
    above its size: each row sums to exactly ``k`` (``k <= sum(sizes)``). Returns ``(B, L)``
    longs: proportional shares rounded down, then the rest one by one to the tensor furthest
    below its share (water-filling when a tensor is full)."""
    cap = torch.tensor(list(sizes), dtype=torch.long)
    out = torch.zeros(shares.shape, dtype=torch.long)
    for b in range(shares.shape[0]):
        share = shares[b].double().clamp(min=1e-12)
        budget = torch.zeros(len(sizes), dtype=torch.long)
        open_ = torch.ones(len(sizes), dtype=torch.bool)
        while int(budget.sum()) < k:
            left = k - int(budget.sum())
            want = share * open_ / (share * open_).sum() * left
            step = torch.minimum(want.floor().long(), cap - budget)
            if int(step.sum()) == 0:  # fewer than one each: the largest wants get one
                j = int(torch.argmax(torch.where(open_, want, -1.0)))
                step[j] = 1
            budget += step
            open_ &= budget < cap
        out[b] = budget
    return out


def _budgets(logits: WeightSpaceFeatures, sparsity: float, who: str) -> Tensor:
    """``(B, L)`` kept counts per weight tensor: ``round((1 - sparsity) · num_weights)`` split in
    proportion to ``Σ sigmoid(logit)`` over each tensor (:func:`layer_budgets`)."""
    sparsity = _check_sparsity(sparsity, who)
    spec = logits.spec
    check_features(logits, spec, 1, f"{who}: logits")
    b = logits.batch_size
    sizes = [math.prod(s) for s in spec.weight_shapes]
    k = round((1.0 - sparsity) * sum(sizes))
    if k < 1:
        raise ValueError(
            f"{who}: sparsity {sparsity} keeps no weight of the {sum(sizes)} in {spec}"
        )
    # The budgets are a short sequential loop over (B, L) numbers (layer_budgets): computed on
    # the CPU in float64, whatever the logits' device; the ranking within tensors stays there.
    flats = [w.reshape(b, -1).detach().to("cpu", torch.float64) for w in logits.weights]
    for t, name in zip(flats, _names(logits)):
        if torch.isnan(t).any():
            raise ValueError(f"{who}: logits {name} hold NaN; expected numbers to rank")
    shares = torch.stack([torch.sigmoid(f).sum(1) for f in flats], dim=1)
    return layer_budgets(shares, k, sizes)


def allocated_top_k(logits: WeightSpaceFeatures, sparsity: float) -> WeightSpaceFeatures:
    """Keep ``round((1 - sparsity) · num_weights)`` weights per network, split over the weight
    tensors as the model expects them to be kept (in proportion to ``Σ sigmoid(logit)`` over
    each tensor), and the top logits within each tensor. Biases are all kept.

    A global top-k (:func:`top_k_mask`) ranks logits across tensors; until a model separates
    kept from pruned entries within each tensor, that ranking follows the per-tensor base rates
    and can empty a whole layer (RESULTS.md measures it). This decoding keeps the model's
    expected share per tensor instead.

    Shapes
    ------
    - logits: 1-channel features on a spec with ``B`` networks
    - output: the same shapes
    """
    return budgeted_mask(logits, _budgets(logits, sparsity, "allocated_top_k"))


def sampled_top_k(
    logits: WeightSpaceFeatures, sparsity: float, seed: int = 0, temperature: float = 1.0
) -> WeightSpaceFeatures:
    """A mask *drawn* from the model instead of its top logits: the per-tensor budgets of
    :func:`allocated_top_k`, filled by Gumbel-top-k, i.e. the top of
    ``logit / temperature + g`` with ``g`` standard Gumbel noise.

    That draws each tensor's kept entries one after the other without replacement, entry ``i``
    with probability proportional to ``exp(logit_i / temperature)``: a sample of the masks the
    model spreads its probability over, with the exact budget. The top logits instead keep only
    the most confident entries, which concentrates the budget: a model that expects some
    neurons to be silenced silences every neuron whose logits fall below the rest (RESULTS.md
    measures it). ``temperature`` → 0 gives :func:`allocated_top_k`.

    The noise comes from a CPU generator seeded with ``seed``, one draw per weight tensor shared
    by every network, so a network's mask does not depend on its batch, its place in it or the
    device (like :class:`MaskVAE`'s eval prior sample). It is not permuted with the logits, so
    the masks are equivariant in distribution only.

    Shapes
    ------
    - logits: 1-channel features on a spec with ``B`` networks
    - output: the same shapes
    """
    who = "sampled_top_k"
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (0 < temperature < math.inf)
    ):
        raise ValueError(f"{who}: temperature must be a positive number, got {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{who}: seed must be an integer, got {seed!r}")
    budgets = _budgets(logits, sparsity, who)
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for w in logits.weights:
        u = torch.rand(w.shape[2:], generator=gen, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        scores.append(w.detach().to("cpu", torch.float64) / temperature + gumbel)
    biases = [b.detach().to("cpu", torch.float64) for b in logits.biases]
    mask = budgeted_mask(WeightSpaceFeatures(scores, biases, logits.spec), budgets)
    return mask.to(logits.weights[0].device, logits.weights[0].dtype)


def budgeted_mask(scores: WeightSpaceFeatures, budgets: Tensor) -> WeightSpaceFeatures:
    """Keep, in each weight tensor of each network, its ``budgets[b, l]`` highest scores (ties:
    the entry that comes first); biases are all kept.

    Shapes
    ------
    - scores: 1-channel features on a spec with ``B`` networks and ``L`` weight tensors
    - budgets: ``(B, L)`` integers
    - output: 0/1 features of the same shapes, in the scores' dtype (float32 for integer scores),
      on the scores' device (a stable sort is exact, so the mask is the same on every device)
    """
    spec, b = scores.spec, scores.batch_size
    first = scores.weights[0]
    dtype = first.dtype if first.is_floating_point() else torch.float32
    weights = []
    for j, (w, shape) in enumerate(zip(scores.weights, spec.weight_shapes)):
        f = w.reshape(b, -1).detach()
        order = torch.sort(f, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        positions = torch.arange(f.shape[1], device=f.device).expand(b, -1).contiguous()
        rank.scatter_(1, order, positions)
        kept = rank < budgets[:, j : j + 1].to(rank.device)
        weights.append(kept.to(dtype).reshape(b, 1, *shape))
    biases = [torch.ones(b, 1, *s, dtype=dtype, device=first.device) for s in spec.bias_shapes]
    return WeightSpaceFeatures(weights, biases, spec)


def mask_iou(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> Tensor:
    """Intersection over union of the kept weights of two masks, per network (biases ignored).

    Shapes
    ------
    - a, b: 1-channel masks on one spec with ``B`` networks
    - output: ``(B,)``; 1 where both masks keep no weight
    """
    if not isinstance(a, WeightSpaceFeatures):
        raise TypeError(f"mask_iou: expected WeightSpaceFeatures, got {type(a).__name__}")
    check_mask(a, a.spec, "mask_iou")
    check_mask(b, a.spec, "mask_iou")
    n = a.batch_size
    if b.batch_size != n:
        raise ValueError(f"mask_iou: {n} networks against {b.batch_size}")
    x = torch.cat([w.reshape(n, -1) for w in a.weights], dim=1).bool()
    y = torch.cat([w.reshape(n, -1).to(x.device) for w in b.weights], dim=1).bool()
    inter = (x & y).sum(dim=1).double()
    union = (x | y).sum(dim=1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
