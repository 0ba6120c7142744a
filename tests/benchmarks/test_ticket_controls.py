"""benchmarks/ticket_controls.py: the logistic rules recover what they model, and the script runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.benchmarks import load_script
from weightspace.data.tickets import TicketConfig, TicketRecipe, generate_tickets, load_tickets

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_position_rule_recovers_known_per_pixel_offsets() -> None:
    bench = load_script("ticket_controls")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(400, 6, 5, generator=g, dtype=torch.float64)
    offsets = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    logit = 1.5 * w.abs() / w.abs().std() - 0.5 + offsets
    kept = (torch.rand(w.shape, generator=g, dtype=torch.float64) < torch.sigmoid(logit)).double()
    fit = bench.TensorLogistic(float(w.abs().std()), 2, 5).fit(w, kept)
    # Slope and offsets are identified up to the shared constant (offset + b).
    assert float(fit.ab.detach()[0]) == pytest.approx(1.5, abs=0.1)
    recovered = fit.offset.detach() + fit.ab[1].detach()
    assert torch.allclose(recovered, offsets - 0.5, atol=0.15)
    # Control: the magnitude-only rule cannot tell the pixels apart, so its fit is worse.
    plain = bench.TensorLogistic(float(w.abs().std()), None, 0).fit(w, kept)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        assert bce(fit.logits(w), kept) < bce(plain.logits(w), kept) - 0.05


def test_the_script_scores_a_rule_on_a_ticket_set(tmp_path: Path) -> None:
    bench = load_script("ticket_controls")
    out = generate_tickets(
        TicketConfig(
            out=str(tmp_path / "set"), dataset="digits", networks=90, sparsity=0.8,
            hidden=(8, 8), chunk_size=30, recipe=TicketRecipe(epochs=2, batch_size=32),
            limit_train=400,
        ),
        progress=False,
        threads=1,
    )  # fmt: skip
    result = bench.main(
        ["--tickets", str(out), "--rule", "position", "--decoding", "sample", "--seed", "3",
         "--json", str(tmp_path / "r.json")]
    )  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text())["mask_test_accuracy"] == pytest.approx(
        result["mask_test_accuracy"]
    )
    test = load_tickets(out).part("test")
    assert result["n_test"] == len(test) == 50
    imp, rnd = result["imp_test_accuracy"], result["random_test_accuracy"]
    assert imp == pytest.approx(float(test.accuracy["imp"].mean()))
    assert result["gap_closed"] == pytest.approx((result["mask_test_accuracy"] - rnd) / (imp - rnd))
    assert 0 <= result["iou_with_imp"] <= 1 and len(result["slopes"]) == 3
    assert 0 < result["first_layer"]["inputs_used"] <= 64
    assert "--rule position" in result["command"]
    with pytest.raises(ValueError, match="unknown rule 'pixels'"):
        bench.fit_rule(test, "pixels")
