"""The machine record every benchmark writes beside its results."""

from __future__ import annotations

import json

import torch

from tests.benchmarks import load_script


def test_machine_info_records_versions_threads_and_device() -> None:
    machine = load_script("_machine")
    info = machine.machine_info("cpu", nfn="0.1.2", retain_freed_memory=False)
    assert info["torch"] == torch.__version__
    assert info["threads"] == torch.get_num_threads()
    assert info["device"] == "cpu"
    assert info["nfn"] == "0.1.2" and info["retain_freed_memory"] is False
    assert json.loads(json.dumps(info)) == info  # it goes into the results' JSON as it is
    line = machine.machine_line(info)
    assert line.startswith(f"{info['processor']}, {info['threads']} thread(s), torch ")
    assert line.endswith(", cpu")


def test_machine_info_without_a_device_leaves_it_out() -> None:
    machine = load_script("_machine")
    info = machine.machine_info()
    assert "device" not in info
    assert not machine.machine_line(info).endswith(", cpu")
