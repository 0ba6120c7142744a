"""Quickstart: an invariant NFN reads trained networks' weights and ignores hidden-neuron order.

1. Train a handful of small MLPs (64 → 16 → 16 → 10) on scikit-learn's digits.
2. Stack their weights as weight-space features and feed them to an (untrained) HNP-invariant NFN.
3. Check the symmetry: permuting each network's hidden neurons leaves every network's predictions
   and the NFN's output unchanged, while an inconsistent permutation (rows of W_1 without the
   columns of W_2) changes both.

Runs in a few seconds on a CPU and raises if a check fails:

    python examples/quickstart.py
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.models import InvariantNFN
from weightspace.testing import inconsistent_permutation

NUM_NETWORKS = 8
STEPS = 300
SEED = 0


def load_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digits as ``(N, 64)`` floats in [0, 1] and integer labels: train and test splits."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target
    )
    x_train, x_test = (torch.tensor(a, dtype=torch.float32) for a in (x_train, x_test))
    y_train, y_test = (torch.tensor(a, dtype=torch.long) for a in (y_train, y_test))
    return x_train, y_train, x_test, y_test


def make_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10)
    )


def train(net: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int) -> nn.Module:
    """Full-batch Adam on cross-entropy."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    return (net(x).argmax(1) == y).float().mean().item()


def permute_hidden(net: nn.Module, spec: NetworkSpec, gen: torch.Generator) -> nn.Module:
    """A copy of ``net`` with its hidden neurons permuted by a random HNP group element."""
    return symmetry.permute_module(net, symmetry.sample(spec, "hnp", generator=gen))


def main() -> None:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    x_train, y_train, x_test, y_test = load_data()

    # A small zoo: different inits, learning rates and training lengths give varied accuracies.
    nets = []
    for n in range(NUM_NETWORKS):
        lr = 10 ** (-3.5 + 1.5 * n / (NUM_NETWORKS - 1))  # 3e-4 … 1e-2
        nets.append(train(make_mlp(), x_train, y_train, lr, STEPS // 2 + 25 * n))
    print(f"Trained {NUM_NETWORKS} MLPs 64 → 16 → 16 → 10 on digits ({len(x_train)} train images).")

    # Weight-space features (B, C = 1, ...), and an HNP-invariant NFN. It is untrained: its
    # invariance comes from its structure, not from learning.
    features = WeightSpaceFeatures.from_modules(nets).to(torch.float64)
    spec = features.spec
    nfn = InvariantNFN(spec, mode="hnp", hidden_channels=(16, 16), head_hidden=(64,))
    nfn = nfn.to(torch.float64).eval()
    print(f"\nWeight space: {spec}")
    print(f"InvariantNFN (HNP) with {sum(p.numel() for p in nfn.parameters())} parameters.")
    with torch.no_grad():
        out = nfn(features)
    scale = out.abs().max().item()

    # (a) A random permutation of each network's hidden neurons is a symmetry.
    permuted = [permute_hidden(net, spec, gen) for net in nets]
    with torch.no_grad():
        logits_gap = max((a(x_test) - b(x_test)).abs().max().item() for a, b in zip(nets, permuted))
        same_predictions = all(
            torch.equal(a(x_test).argmax(1), b(x_test).argmax(1)) for a, b in zip(nets, permuted)
        )
        out_permuted = nfn(WeightSpaceFeatures.from_modules(permuted).to(torch.float64))
    symmetric_gap = (out_permuted - out).abs().max().item()
    print("\n(a) Hidden neurons permuted at random in every network:")
    print(f"    networks' logits change by at most {logits_gap:.2e} (float32 rounding)")
    print(f"    networks' predictions identical: {same_predictions}")
    print(f"    NFN output changes by at most {symmetric_gap:.2e} (output scale {scale:.2e})")
    if not same_predictions or logits_gap > 1e-4:
        raise RuntimeError("permuting hidden neurons changed a network's predictions")
    if symmetric_gap > 1e-10 * max(scale, 1.0):
        raise RuntimeError(f"the NFN is not HNP-invariant: output changed by {symmetric_gap:.3g}")

    # (b) Permuting the rows of W_1 and b_1 without the columns of W_2 is not a symmetry.
    broken = inconsistent_permutation(features, layer=1, generator=gen)
    with torch.no_grad():
        broken_gap = (nfn(broken) - out).abs().max().item()
    print("\n(b) Control: rows of W_1 and b_1 permuted without the columns of W_2:")
    print(f"    NFN output changes by {broken_gap:.2e} ({broken_gap / scale:.1e} of its scale)")
    if not broken_gap > 1e-3 * scale:
        raise RuntimeError(
            f"the NFN's output did not change under an inconsistent permutation ({broken_gap:.3g})"
        )

    # (c) Test accuracy of each network: trained, hidden neurons permuted, inconsistently permuted.
    broken_nets = [broken.to(torch.float32).load_into(make_mlp(), n) for n in range(NUM_NETWORKS)]
    print("\n(c) Test accuracy per network (trained | hidden neurons permuted | inconsistent):")
    for n, triple in enumerate(zip(nets, permuted, broken_nets)):
        accs = " | ".join(f"{accuracy(net, x_test, y_test):.3f}" for net in triple)
        print(f"    network {n}: {accs}")

    print(
        "\nSummary: the NFN's output is unchanged (up to rounding) when hidden neurons are "
        "permuted, as the networks' functions are, and changes when the permutation breaks the "
        "networks. All checks passed."
    )


if __name__ == "__main__":
    main()
