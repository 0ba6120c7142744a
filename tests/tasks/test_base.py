import argparse

import pytest

from weightspace import NetworkSpec
from weightspace.cli import build_parser
from weightspace.models import InvariantNFN
from weightspace.nn import ChannelDropout
from weightspace.tasks.base import invariant_model, nonnegative_int
from weightspace.tasks.generalization import GeneralizationConfig

SPEC = NetworkSpec((3, 4, 2))


def test_nonnegative_int():
    assert nonnegative_int("0") == 0 and nonnegative_int("12") == 12
    for bad in ("-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an integer >= 0"):
            nonnegative_int(bad)


def test_warmup_steps_reaches_the_train_config_and_is_saved_only_when_set():
    config = GeneralizationConfig(zoo="z", model="hnp", out="o", warmup_steps=7)
    assert config.train_config(eval_batch_size=None, progress=False).warmup_steps == 7
    assert config.settings()["warmup_steps"] == 7
    default = GeneralizationConfig(zoo="z", model="hnp", out="o")
    assert default.train_config(eval_batch_size=None, progress=False).warmup_steps == 0
    # A run at the default saves the settings that runs saved before the field existed.
    assert "warmup_steps" not in default.settings()
    assert "seed" in default.settings() and "out" not in default.settings()
    with pytest.raises(ValueError, match=r"warmup_steps must be an int >= 0, got -1"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", warmup_steps=-1)


@pytest.mark.parametrize(
    ("command", "data"), [("generalization", "--zoo"), ("inr-classify", "--inrs")]
)
def test_train_commands_take_warmup_steps(command, data, capsys):
    base = ["train", command, data, "d", "--model", "hnp", "--out", "o"]
    assert build_parser().parse_args(base).warmup_steps == 0
    assert build_parser().parse_args([*base, "--warmup-steps", "50"]).warmup_steps == 50
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--warmup-steps", "-3"])
    assert "expected an integer >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "data"), [("generalization", "--zoo"), ("inr-classify", "--inrs")]
)
def test_train_commands_take_lr_decay(command, data, capsys):
    base = ["train", command, data, "d", "--model", "hnp", "--out", "o"]
    assert build_parser().parse_args(base).lr_decay == "none"
    assert build_parser().parse_args([*base, "--lr-decay", "cosine"]).lr_decay == "cosine"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--lr-decay", "linear"])
    assert "invalid choice: 'linear'" in capsys.readouterr().err


def test_invariant_model_channel_dropout_is_for_nfns_only():
    for name in ("hnp", "np"):
        model = invariant_model(name, SPEC, (4, 4), (8,), 2, channel_dropout=0.25)
        assert isinstance(model, InvariantNFN)
        drops = [m for m in model.encoder if isinstance(m, ChannelDropout)]
        assert [m.p for m in drops] == [0.25, 0.25]
    plain = invariant_model("hnp", SPEC, (4, 4), (8,), 2)
    assert not any(isinstance(m, ChannelDropout) for m in plain.modules())
    for name in ("statnet", "mlp"):
        assert invariant_model(name, SPEC, (4,), (8,), 2, channel_dropout=0.0) is not None
        with pytest.raises(ValueError, match=f"channel_dropout applies to NFNs .*not '{name}'"):
            invariant_model(name, SPEC, (4,), (8,), 2, channel_dropout=0.25)
