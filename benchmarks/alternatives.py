"""The hand-written trainer code against the obvious PyTorch alternatives, on the same work.

Two pieces of hand-written numerics must earn their place (issue 9): the closed-form SIREN
backward of :func:`weightspace.train.siren.fit_sirens` and the vectorised per-network
SGD/Adam/RMSprop of the zoo trainer (:class:`weightspace.train.optim.PerNetworkOptimizer`).
Each is timed against the alternatives a reader would reach for first, on identical inputs,
after checking that the alternatives compute the same numbers.

1. **SIREN fitting step** (B SIRENs 2-32-32-1, ω0 = 30, real MNIST images, MSE over every
   pixel, gradient w.r.t. all weights):

   - ``hand``: ``weightspace.train.siren._BatchedSiren.step_gradients`` (closed-form
     backward into fixed buffers);
   - ``autograd-forward``: autograd through :func:`weightspace.functional.forward` with
     :func:`siren_activation` on a :class:`WeightSpaceFeatures` of the stacked weights;
   - ``autograd-forward-batched``: the same with the coordinates given per network (``(B, N,
     2)``, an expanded view) instead of shared (``(N, 2)``), which changes the first layer's
     layout in ``functional.forward``;
   - ``autograd-bmm``: autograd through a plain batched forward (``baddbmm``, ``sin``), to
     separate autograd's cost from ``functional.forward``'s;
   - ``vmap-grad``: ``torch.func.vmap(torch.func.grad(loss))`` over the per-network
     parameters of one :func:`siren_module` (``functional_call``), the model-ensembling
     recipe of the torch.func docs.

   Timed alone (the gradient) and as the whole step of ``fit_sirens`` (gradient and the same
   fused ``torch.optim.Adam`` over the stacked weights).

2. **Zoo optimiser step** (B zoo CNNs with the recipes of ``generate_zoo``: SGD/Adam/RMSprop,
   per-network learning rate and L2, trained by ``zoo_trainer``'s
   :class:`~weightspace.train.batched.BatchedTrainer`). Every variant is the trainer's
   ``optimizer`` and updates its flat ``(B, P)`` weight tensor in place, so the batched forward
   is untouched:

   - ``hand``: ``PerNetworkOptimizer.step`` (networks sorted by optimiser, one rule per block);
   - ``optim-groups``: ``torch.optim`` SGD/Adam/RMSprop with two parameter groups per network
     (its weights with ``weight_decay = 2 λ``, its biases with none; the per-network rows are
     views of the flat tensor), PyTorch's default implementation (on CPU the per-tensor loop);
   - ``optim-groups-foreach`` / ``optim-groups-fused``: the same with ``foreach=True`` /
     ``fused=True`` (RMSprop has no fused kernel: foreach);
   - ``optim-rows-fused``: one group per network (its whole row), L2 added to the gradient by
     hand as ``hand`` does, fused/foreach;
   - ``optim-blocks-fused`` (**not equivalent**, a lower bound on torch.optim's cost): one group
     per optimiser block. ``torch.optim`` has one learning rate per group, so this gives every
     network of a block the first one's rate; the agreement check reports how far it drifts.

   Timed alone (the update, after copying the gradient into a buffer, as a backward pass
   would write it: the same copy for every variant) and inside the whole training step
   (``BatchedTrainer.step``: forward, backward and update of every network on its own batch of
   32 images), to show the update's share.

Every variant is checked against ``hand`` before timing, in float64: the SIREN gradient and
the weights after three fit steps; the zoo weights after five updates on random gradients and
after three real training steps. A mismatch aborts the run. Repetitions interleave the
variants (order rotated each repetition) and report medians of the time per call; ratios are
variant / hand (above 1: hand is faster).

    python benchmarks/alternatives.py [--sirens 32 256] [--zoo-networks 64] [--reps 7]
        [--threads 1] [--only siren zoo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from _machine import machine_info, machine_line
from torch import Tensor
from torch.func import functional_call, grad, vmap

from weightspace.data.images import load_images
from weightspace.data.inr import (
    DEFAULT_LR,
    OMEGA_0,
    SIREN_SPEC,
    init_sirens,
    pixel_grid,
    siren_activation,
    siren_module,
)
from weightspace.data.zoo import (
    ADAM_BETAS,
    ADAM_EPS,
    RMSPROP_ALPHA,
    RMSPROP_EPS,
    _make_network,
    zoo_trainer,
)
from weightspace.functional.forward import forward
from weightspace.space.features import WeightSpaceFeatures
from weightspace.train.batched import BatchedTrainer, gather_batches, retain_freed_memory
from weightspace.train.optim import PerNetworkOptimizer
from weightspace.train.siren import ADAM_BETAS as SIREN_ADAM_BETAS
from weightspace.train.siren import ADAM_EPS as SIREN_ADAM_EPS
from weightspace.train.siren import _BatchedSiren

SIREN_PATHS = ("hand", "autograd-forward", "autograd-forward-batched", "autograd-bmm", "vmap-grad")
OPTIM_PATHS = (
    "hand",
    "optim-groups",
    "optim-groups-foreach",
    "optim-groups-fused",
    "optim-rows-fused",
    "optim-blocks-fused",
)
#: Paths that must reproduce ``hand``; the blocks variant changes the learning rates.
EQUIVALENT_OPTIM_PATHS = OPTIM_PATHS[:-1]
#: Paths timed inside the whole zoo step (the default torch.optim and the fastest equivalent).
STEP_PATHS = ("hand", "optim-groups", "optim-rows-fused")


# ------------------------------------------------------------------ timing
def time_interleaved(
    fns: dict[str, Callable[[], object]], *, reps: int, iters: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each function: the mean over ``iters`` calls, once per repetition.

    Each repetition runs every function ``iters`` times, the order rotated by one each
    repetition, so that all see the same drift in machine load.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            times[name].append((time.perf_counter() - start) / iters)
    return times


def worst_relative(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    """Largest ``max|got - want| / max|want|`` over the tensors."""
    return max(
        ((g - w).abs().max() / w.abs().max().clamp_min(1e-30)).item() for g, w in zip(got, want)
    )


# ------------------------------------------------------------------ SIRENs
class SirenGradients:
    """One way of computing the SIREN fitting gradient; writes ``.grad`` of ``params``.

    ``params`` is ``[W1, W2, W3, b1, b2, b3]``, each ``(B, *shape)`` (the layout of
    :func:`init_sirens` and of ``fit_sirens``); ``coords`` ``(N, 2)``; targets ``(B, N, 1)``.
    """

    def __init__(self, path: str, params: list[Tensor], coords: Tensor) -> None:
        if path not in SIREN_PATHS:
            raise ValueError(
                f"SirenGradients: unknown path {path!r}; expected one of {SIREN_PATHS}"
            )
        self.path, self.params, self.coords = path, params, coords
        L = len(params) // 2
        if path == "hand":
            self._hand = _BatchedSiren(params, coords)
            return
        for p in params:
            p.requires_grad_(True)
        if path in ("autograd-forward-batched", "autograd-bmm"):
            self._x = coords.expand(params[0].shape[0], *coords.shape)
        if path == "vmap-grad":
            module = siren_module().to(dtype=coords.dtype, device=coords.device)
            linears = [n for n, _ in module.named_parameters() if n.endswith(".weight")]
            names = linears + [n[: -len("weight")] + "bias" for n in linears]
            if len(names) != 2 * L:
                raise ValueError(f"SirenGradients: siren_module has {len(names)} tensors")
            self._names = names

            def loss(tensors: dict[str, Tensor], target: Tensor) -> Tensor:
                out = functional_call(module, tensors, (coords,))
                return (out - target).square().mean()

            self._grad = vmap(grad(loss))

    def __call__(self, target: Tensor) -> None:
        if self.path == "hand":
            self._hand.step_gradients(target)
            return
        if self.path == "vmap-grad":
            grads = self._grad(dict(zip(self._names, self.params)), target)
            for name, p in zip(self._names, self.params):
                # In the parameter's layout, as backward() would leave it: torch 2.13's fused
                # CPU Adam silently misreads a gradient whose strides differ from its
                # parameter's (the gradient of a transposed weight is such a view).
                g = grads[name]
                p.grad = g if g.stride() == p.stride() else g.contiguous()
            return
        L = len(self.params) // 2
        weights, biases = self.params[:L], self.params[L:]
        if self.path.startswith("autograd-forward"):
            features = WeightSpaceFeatures(
                [w.unsqueeze(1) for w in weights], [b.unsqueeze(1) for b in biases], SIREN_SPEC
            )
            x = self.coords if self.path == "autograd-forward" else self._x
            out = forward(features, x, siren_activation)
        else:
            h = self._x
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                h = torch.sin(OMEGA_0 * h) if i < L - 1 else h
            out = h
        loss = (out - target).square().mean(dim=(1, 2))
        for p in self.params:
            p.grad = None
        # backward() (not autograd.grad) gives each .grad its parameter's layout.
        loss.sum().backward()


def siren_problem(images: Tensor, *, seed: int = 0) -> tuple[list[Tensor], Tensor, Tensor]:
    """Initial weights (``init_sirens``), coordinates and ``(B, N, 1)`` targets of ``images``."""
    B, C, H, W = images.shape
    params = init_sirens(B, generator=torch.Generator().manual_seed(seed), dtype=images.dtype)
    coords = pixel_grid(H, W, dtype=images.dtype)
    return params, coords, images.permute(0, 2, 3, 1).reshape(B, H * W, C)


def fit_optimizer(params: list[Tensor]) -> torch.optim.Adam:
    """The optimiser of ``fit_sirens``: one fused Adam over the stacked weights."""
    return torch.optim.Adam(
        params, lr=DEFAULT_LR, betas=SIREN_ADAM_BETAS, eps=SIREN_ADAM_EPS, fused=True
    )


def check_siren_paths(
    images: Tensor,
    paths: Sequence[str] = SIREN_PATHS,
    *,
    steps: int = 3,
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-9,
    fit_tol: float = 1e-7,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every path against ``hand``: its gradient, and the weights after ``steps`` fit steps.

    From the same weights and targets: the gradient, then the change of the weights after
    ``steps`` steps of gradient and :func:`fit_optimizer` (the work of ``fit_sirens``). Computed
    in ``dtype`` (float64 by default, so that only the arithmetic's rounding, not the float32
    noise of summation order, is left). Returns the worst relative difference of each path for
    both; raises ``AssertionError`` above ``tol`` (gradient) or ``fit_tol`` (fit: Adam divides
    by the root of the squared gradients, which magnifies rounding where they are near zero).
    """
    params, coords, target = siren_problem(images.to(dtype), seed=seed)
    grads, moves = {}, {}
    for path in ("hand", *[p for p in paths if p != "hand"]):
        mine = [p.clone() for p in params]
        step = SirenGradients(path, mine, coords)
        step(target)
        grads[path] = [p.grad.detach().clone() for p in mine]
        opt = fit_optimizer(mine)
        opt.step()
        for _ in range(steps - 1):
            step(target)
            opt.step()
        moves[path] = [p.detach() - p0 for p, p0 in zip(mine, params)]
    errors = {
        path: {
            "gradient": worst_relative(grads[path], grads["hand"]),
            "fit": worst_relative(moves[path], moves["hand"]),
        }
        for path in grads
    }
    bad = {
        path: err
        for path, err in errors.items()
        if not (err["gradient"] <= tol and err["fit"] <= fit_tol)
    }
    if bad:
        raise AssertionError(
            f"SIREN fitting differs from hand's beyond {tol:g} (gradient) or {fit_tol:g} (fit): "
            f"{bad}"
        )
    return errors


def bench_sirens(images: Tensor, *, reps: int, iters: int, seed: int = 0) -> dict:
    """Gradient and fit-step times of every SIREN path on ``images`` (``(B, 1, H, W)``)."""
    errors = check_siren_paths(images, seed=seed)
    params, coords, target = siren_problem(images, seed=seed)
    grad_fns, fit_fns = {}, {}
    for path in SIREN_PATHS:
        mine = [p.clone() for p in params]
        step = SirenGradients(path, mine, coords)
        grad_fns[path] = lambda step=step: step(target)
        fit = [p.clone() for p in params]
        fit_step = SirenGradients(path, fit, coords)
        opt = fit_optimizer(fit)
        fit_fns[path] = lambda s=fit_step, o=opt: (s(target), o.step())
    grad_times = time_interleaved(grad_fns, reps=reps, iters=iters)
    fit_times = time_interleaved(fit_fns, reps=reps, iters=iters)
    return {
        "sirens": images.shape[0],
        "pixels": target.shape[1],
        "threads": torch.get_num_threads(),
        "max_relative_difference": errors,
        "gradient_s": grad_times,
        "fit_step_s": fit_times,
    }


# ------------------------------------------------------------------ zoo optimisers
class TorchOptimizer:
    """``torch.optim`` in the place of a :class:`PerNetworkOptimizer` (``path`` of
    :data:`OPTIM_PATHS`).

    Built from the hand optimiser it replaces: the same flat ``(B, P)`` parameters, rows sorted
    by rule (its ``runs``), per-network learning rates and weight decay on the first
    ``decayed`` columns. The rules' constants are the zoo's (:data:`ADAM_EPS` …), taken here and
    not from the hand optimiser, so that a wrong constant on either side shows in the check.
    Parameters are views of the flat tensor's rows (one network, or a block of networks sharing
    an optimiser), so the optimisers update it in place. It has the interface the trainer uses,
    ``step(grad)`` and ``steps``: set as a :class:`BatchedTrainer`'s ``optimizer``, it is that
    trainer's update (:func:`make_trainer`); forward and backward stay the trainer's.
    """

    def __init__(self, hand: PerNetworkOptimizer, path: str = "optim-groups") -> None:
        if path not in OPTIM_PATHS[1:]:
            raise ValueError(
                f"TorchOptimizer: unknown path {path!r}; expected one of {OPTIM_PATHS[1:]}"
            )
        if hand.weight_decay is None:
            raise ValueError(
                "TorchOptimizer: the hand optimizer has no weight decay (the zoo's L2)"
            )
        self.path = path
        self.params = hand.params
        self.weight_decay = hand.weight_decay
        self.decayed = hand.decayed
        self.steps = 0
        self._fold_decay = path in ("optim-rows-fused", "optim-blocks-fused")
        # Rows first (networks), then columns (weights or biases); the same index gives the
        # parameter's view of the flat weights and its gradient's view of the flat gradient.
        self._index: list[tuple[int | slice, slice]] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        impl = {"optim-groups": {}, "optim-groups-foreach": {"foreach": True}}.get(path)
        decayed, rest = self.decayed, slice(self.decayed.stop, None)
        for kind, rows in hand.runs:
            groups = []
            if path == "optim-blocks-fused":
                lr = float(hand.lr[rows.start])
                groups.append(self._group((rows, slice(None)), lr, 0.0))
            else:
                for b in range(rows.start, rows.stop):
                    lr, wd = float(hand.lr[b]), float(self.weight_decay[b])
                    if self._fold_decay:
                        groups.append(self._group((b, slice(None)), lr, 0.0))
                    else:
                        groups.append(self._group((b, decayed), lr, wd))
                        groups.append(self._group((b, rest), lr, 0.0))
            if impl is not None:
                options = impl
            else:  # fused where torch.optim has a fused kernel
                options = {"foreach": True} if kind == "rmsprop" else {"fused": True}
            self.optimizers.append(_optimizer(kind, groups, options))
        self._params = [
            p for opt in self.optimizers for group in opt.param_groups for p in group["params"]
        ]

    def _group(self, index: tuple[int | slice, slice], lr: float, wd: float) -> dict:
        self._index.append(index)
        return {"params": [self.params[index]], "lr": lr, "weight_decay": wd}

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        """One step of every network's optimiser; ``grad`` is the ``(B, P)`` gradient."""
        self.steps += 1
        if self._fold_decay:
            w = self.decayed
            grad[:, w].addcmul_(self.weight_decay[:, None], self.params[:, w])
        for p, index in zip(self._params, self._index):
            p.grad = grad[index]
        for opt in self.optimizers:
            opt.step()


def _optimizer(kind: str, groups: list[dict], options: dict) -> torch.optim.Optimizer:
    """torch.optim's SGD/Adam/RMSprop with the zoo's constants (as ``zoo_trainer``)."""
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], **options)
    if kind == "adam":
        return torch.optim.Adam(groups, betas=ADAM_BETAS, eps=ADAM_EPS, **options)
    return torch.optim.RMSprop(groups, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS, **options)


def make_trainer(
    path: str, nets: Sequence, *, dtype: torch.dtype = torch.float32
) -> BatchedTrainer:
    """The zoo trainer (``zoo_trainer``) of networks ``nets`` (``_make_network``), dropout seed
    0, its update ``path``: the hand :class:`PerNetworkOptimizer` or a :class:`TorchOptimizer`
    built from it."""
    stacked = [torch.stack([n.init[j] for n in nets]).to(dtype) for j in range(len(nets[0].init))]
    trainer = zoo_trainer(stacked, [n.hp for n in nets], generator=torch.Generator().manual_seed(0))
    if path != "hand":
        trainer.optimizer = TorchOptimizer(trainer.optimizer, path)
    return trainer


def flat_weights(trainer: BatchedTrainer) -> Tensor:
    """The trainer's weights as one ``(B, P)`` tensor, networks in the caller's order (a copy)."""
    return torch.cat([t.flatten(1) for t in trainer.tensors], dim=1)


def zoo_networks(count: int, n_train: int, *, seed: int = 0) -> list:
    """The first ``count`` networks of the zoo with ``seed`` (recipes, initial weights, data)."""
    return [_make_network(seed, i, n_train) for i in range(count)]


def random_gradients(trainer: BatchedTrainer, steps: int, *, seed: int = 0) -> list[Tensor]:
    """``steps`` seeded ``(B, P)`` gradients of the size of ``trainer``'s flat weights (what
    ``trainer.optimizer.step`` takes)."""
    g = torch.Generator().manual_seed(seed)
    flat = trainer.optimizer.params
    return [torch.randn(flat.shape, generator=g, dtype=flat.dtype) * 1e-2 for _ in range(steps)]


def check_optim_paths(
    nets: Sequence,
    x: Tensor,
    y: Tensor,
    idx: Tensor,
    paths: Sequence[str] = OPTIM_PATHS,
    *,
    updates: int = 5,
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-9,
) -> dict[str, dict[str, float]]:
    """Weight changes of every path against ``hand``'s, from the update alone and from training.

    From the initial weights: ``updates`` calls of the update alone on the same random
    gradients; separately, one training step (``step``) per column of ``idx`` (``(B, steps,
    batch)`` indices into ``x``/``y``). Compares the change of the flat weights against
    ``hand``'s, as the worst ``max|Δ - Δ_hand| / max|Δ_hand|``, in ``dtype`` (float64 by
    default: in float32 the rounding of the forward grows to ~3e-5 over three training steps, as
    it does between any two summation orders). Returns it per path for both;
    raises ``AssertionError`` above ``tol`` for the paths of :data:`EQUIVALENT_OPTIM_PATHS`.
    """
    x = x.to(dtype)
    moves: dict[str, dict[str, Tensor]] = {}
    for path in ("hand", *[p for p in paths if p != "hand"]):
        trainer = make_trainer(path, nets, dtype=dtype)
        start = flat_weights(trainer)
        for g in random_gradients(trainer, updates):
            trainer.optimizer.step(g)
        moved = {"updates": flat_weights(trainer) - start}
        trainer = make_trainer(path, nets, dtype=dtype)
        for s in range(idx.shape[1]):
            trainer.step(gather_batches(x, idx[:, s]), y[idx[:, s]])
        moved["steps"] = flat_weights(trainer) - start
        moves[path] = moved
    errors = {
        path: {k: worst_relative([moves[path][k]], [moves["hand"][k]]) for k in moves[path]}
        for path in moves
    }
    bad = {
        path: err
        for path, err in errors.items()
        if path in EQUIVALENT_OPTIM_PATHS and not max(err.values()) <= tol
    }
    if bad:
        raise AssertionError(f"optimiser updates differ from hand's beyond {tol:g}: {bad}")
    return errors


def bench_zoo(
    data_x: Tensor, data_y: Tensor, *, networks: int, reps: int, iters: int, seed: int = 0
) -> dict:
    """Update and training-step times of the zoo optimiser paths on ``networks`` networks."""
    nets = zoo_networks(networks, data_x.shape[0], seed=seed)
    batch = 32
    idx = torch.stack([n.stream.take(3 * batch) for n in nets]).view(networks, 3, batch)
    errors = check_optim_paths(nets, data_x, data_y, idx)
    trainers = {path: make_trainer(path, nets) for path in OPTIM_PATHS}
    gradient = random_gradients(trainers["hand"], 1, seed=1)[0]
    buffers = {path: torch.empty_like(gradient) for path in OPTIM_PATHS}

    def update(path: str) -> Callable[[], None]:
        trainer, buf = trainers[path], buffers[path]

        def run() -> None:
            buf.copy_(gradient)  # what the backward pass would have written
            trainer.optimizer.step(buf)

        return run

    update_times = time_interleaved(
        {path: update(path) for path in OPTIM_PATHS}, reps=reps, iters=iters
    )
    xb, yb = gather_batches(data_x, idx[:, 0]), data_y[idx[:, 0]]
    steppers = {path: make_trainer(path, nets) for path in STEP_PATHS}
    step_times = time_interleaved(
        {path: (lambda t=steppers[path]: t.step(xb, yb)) for path in STEP_PATHS},
        reps=reps,
        iters=max(1, iters // 10),
        warmup=1,
    )
    kinds = [n.hp.optimizer for n in nets]
    return {
        "networks": networks,
        "image_size": list(data_x.shape[2:]),
        "batch": batch,
        "optimizers": {k: kinds.count(k) for k in sorted(set(kinds))},
        "parameters_per_network": int(trainers["hand"].optimizer.params.shape[1]),
        "threads": torch.get_num_threads(),
        "max_relative_difference": errors,
        "update_s": update_times,
        "step_s": step_times,
    }


# ------------------------------------------------------------------ report
def _ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def siren_table(results: list[dict]) -> list[str]:
    lines = [
        "| SIRENs | path | gradient (ms) | × hand | fit step with Adam (ms) | × hand "
        "| max rel. difference (float64): gradient | 3 fit steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g0, f0 = _ms(r["gradient_s"]["hand"]), _ms(r["fit_step_s"]["hand"])
        for path in SIREN_PATHS:
            g, f = _ms(r["gradient_s"][path]), _ms(r["fit_step_s"][path])
            err = r["max_relative_difference"][path]
            diffs = (
                "reference | reference"
                if path == "hand"
                else f"{err['gradient']:.1e} | {err['fit']:.1e}"
            )
            lines.append(
                f"| {r['sirens']} | {path} | {g:.2f} | {g / g0:.2f} | {f:.2f} | {f / f0:.2f} | "
                f"{diffs} |"
            )
    return lines


def zoo_tables(results: list[dict]) -> list[str]:
    lines = [
        "| networks | path | update (ms) | × hand | max rel. difference (float64): 5 updates "
        "| 3 training steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        u0 = _ms(r["update_s"]["hand"])
        for path in OPTIM_PATHS:
            u, err = _ms(r["update_s"][path]), r["max_relative_difference"][path]
            note = " (not equivalent)" if path not in EQUIVALENT_OPTIM_PATHS else ""
            diffs = (
                "reference | reference"
                if path == "hand"
                else f"{err['updates']:.1e}{note} | {err['steps']:.1e}{note}"
            )
            lines.append(f"| {r['networks']} | {path} | {u:.3f} | {u / u0:.2f} | {diffs} |")
    lines += [
        "",
        "| networks | path | training step (ms) | × hand | its update (ms) | update share |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s0 = _ms(r["step_s"]["hand"])
        for path in STEP_PATHS:
            s, u = _ms(r["step_s"][path]), _ms(r["update_s"][path])
            lines.append(
                f"| {r['networks']} | {path} | {s:.1f} | {s / s0:.2f} | {u:.3f} | "
                f"{100 * u / s:.1f} % |"
            )
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=("siren", "zoo"), default=["siren", "zoo"])
    parser.add_argument("--sirens", type=int, nargs="+", default=[32, 256], help="SIRENs at once")
    parser.add_argument("--siren-iters", type=int, default=5, help="calls per rep and path")
    parser.add_argument("--zoo-networks", type=int, nargs="+", default=[64], help="networks")
    parser.add_argument("--zoo-iters", type=int, default=20, help="update calls per rep and path")
    parser.add_argument("--limit-train", type=int, default=1024, help="MNIST training images")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()  # as generate_zoo does; it applies to every path
    command = "python benchmarks/alternatives.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    machine = machine_info(retain_freed_memory=retained)
    print(f"$ {command}".rstrip())
    print(
        f"# {machine_line(machine)}; medians of {args.reps} interleaved reps; freed memory retained: {retained}",
        flush=True,
    )
    n_images = max([args.limit_train, *args.sirens])
    data = load_images("mnist", limit_train=n_images)
    result: dict = {"command": command, "machine": machine, "args": vars(args)}
    if "siren" in args.only:
        sirens = []
        for count in args.sirens:
            r = bench_sirens(
                data.train_x[:count], reps=args.reps, iters=args.siren_iters, seed=args.seed
            )
            sirens.append(r)
            print(f"# SIRENs: {count} done", flush=True)
        result["siren"] = sirens
        print(
            "\n".join(["", "SIREN fitting step, MNIST 28x28 (784 pixels):", *siren_table(sirens)])
        )
    if "zoo" in args.only:
        x, y = data.train_x[: args.limit_train], data.train_y[: args.limit_train]
        zoo = []
        for count in args.zoo_networks:
            r = bench_zoo(
                x, y, networks=count, reps=args.reps, iters=args.zoo_iters, seed=args.seed
            )
            zoo.append(r)
            mix = ", ".join(f"{v} {k}" for k, v in r["optimizers"].items())
            print(f"# zoo: {count} networks ({mix}), {r['parameters_per_network']} weights each")
        result["zoo"] = zoo
        print("\n".join(["", "Zoo optimiser step, MNIST 28x28, batch 32:", *zoo_tables(zoo)]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
