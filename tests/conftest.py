import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    its results are then bit-identical across processes, and tiny tensors run faster and are
    immune to a busy machine's contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: The devices that device tests run on: the CPU always, CUDA where a GPU is present (the CUDA
#: cases are skipped, not failed, without one, unless ``WEIGHTSPACE_REQUIRE_CUDA=1``: then they
#: run and fail, as benchmarks/cuda_check.sh wants). ``pytest.mark.parametrize("device",
#: DEVICES)`` or the ``device`` fixture.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available() and os.environ.get("WEIGHTSPACE_REQUIRE_CUDA") != "1",
            reason="no CUDA device",
        ),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each of :data:`DEVICES` in turn."""
    return torch.device(request.param)
