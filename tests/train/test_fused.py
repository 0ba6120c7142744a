"""weightspace.train.fused: compiled kernels agree with their eager versions, and fall back."""

from __future__ import annotations

import warnings

import pytest
import torch

from weightspace.train import fused
from weightspace.train.fused import COMPILE_ENV, FusedKernel, compile_enabled
from weightspace.train.siren import _ANGLE_SUM, _SIN_COS


def _sin_cos_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 37, 5, generator=g, dtype=dtype) * 20  # SIREN-like arguments, up to ~80
    return u, torch.empty_like(u)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sin_cos_compiled_agrees_with_eager(dtype: torch.dtype, monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    u, h = _sin_cos_inputs(dtype)
    original = u.to(torch.float64, copy=True)  # the kernels overwrite u
    u_ref, h_ref = u.clone(), torch.empty_like(h)
    _SIN_COS.eager(u_ref, h_ref)
    _SIN_COS(u, h)
    assert "cpu" not in _SIN_COS._failed and _SIN_COS._compiled is not None
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(h, h_ref, atol=tol, rtol=0)
    torch.testing.assert_close(u, u_ref, atol=tol, rtol=0)
    # Both are sin and cos: checked against float64 on the original arguments.
    torch.testing.assert_close(h.double(), original.sin(), atol=4 * tol, rtol=0)
    torch.testing.assert_close(u.double(), original.cos(), atol=4 * tol, rtol=0)
    # Another size runs through the same compiled function (dynamic shapes).
    u2, h2 = torch.randn(5, 11, 7, dtype=dtype), torch.empty(5, 11, 7, dtype=dtype)
    expected = u2.sin()
    _SIN_COS(u2, h2)
    torch.testing.assert_close(h2, expected, atol=tol, rtol=0)


def test_angle_sum_compiled_agrees_with_eager_on_views(monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    g = torch.Generator().manual_seed(1)
    B, H, W, n = 2, 5, 6, 4
    a = torch.randn(B, H, n, generator=g, dtype=torch.float64) * 10
    c = torch.randn(B, W, n, generator=g, dtype=torch.float64) * 10
    args = (a.sin()[:, :, None], a.cos()[:, :, None], c.sin()[:, None], c.cos()[:, None])
    # The outputs are views of flat (B, H * W, n) buffers, as in _BatchedSiren.
    h, u = (
        torch.zeros(B, H * W, n, dtype=torch.float64),
        torch.zeros(B, H * W, n, dtype=torch.float64),
    )
    _ANGLE_SUM(*args, h.view(B, H, W, n), u.view(B, H, W, n))
    total = (a[:, :, None] + c[:, None]).reshape(B, H * W, n)
    torch.testing.assert_close(h, total.sin(), atol=1e-12, rtol=0)
    torch.testing.assert_close(u, total.cos(), atol=1e-12, rtol=0)


def test_switched_off_by_the_environment(monkeypatch) -> None:
    calls: list[str] = []

    def compiled_side(t: torch.Tensor) -> torch.Tensor:
        calls.append("fn")
        return t * 2

    def eager_side(t: torch.Tensor) -> torch.Tensor:
        calls.append("eager")
        return t * 2

    kernel = FusedKernel(compiled_side, "doubling", eager=eager_side)
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert not compile_enabled()
    out = kernel(torch.ones(3))
    assert calls == ["eager"] and kernel._compiled is None
    torch.testing.assert_close(out, torch.full((3,), 2.0))
    monkeypatch.setenv(COMPILE_ENV, "1")
    assert compile_enabled()


def test_a_failed_compile_warns_once_and_runs_eagerly(monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no working C++ compiler\nlong log")

        return run

    monkeypatch.setattr(fused.torch, "compile", broken_compile)
    eager_calls: list[int] = []

    def eager_side(t: torch.Tensor) -> torch.Tensor:
        eager_calls.append(1)
        return t + 1

    kernel = FusedKernel(lambda t: t + 1, "increment", eager=eager_side)
    with pytest.warns(
        RuntimeWarning, match=r"'increment' for cpu failed \(RuntimeError: no working"
    ):
        out = kernel(torch.zeros(2))
    torch.testing.assert_close(out, torch.ones(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: cpu is marked failed
        torch.testing.assert_close(kernel(torch.zeros(2)), torch.ones(2))
    assert eager_calls == [1, 1] and kernel._failed == {"cpu"}


def test_inside_an_outer_compile_the_eager_function_runs(monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    monkeypatch.setattr(fused.torch.compiler, "is_compiling", lambda: True)
    seen: list[str] = []
    kernel = FusedKernel(lambda t: t, "identity", eager=lambda t: seen.append("eager") or t)
    kernel(torch.zeros(1))
    assert seen == ["eager"] and kernel._compiled is None


def test_torch_compile_itself_raising_falls_back(monkeypatch) -> None:
    """Where torch.compile is unsupported it raises when called, before any kernel exists."""
    monkeypatch.delenv(COMPILE_ENV, raising=False)

    def unsupported(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(fused.torch, "compile", unsupported)
    kernel = FusedKernel(lambda t: t * 3, "tripling")
    with pytest.warns(RuntimeWarning, match=r"'tripling' for cpu failed \(RuntimeError: torch"):
        out = kernel(torch.ones(2))
    torch.testing.assert_close(out, torch.full((2,), 3.0))
    assert kernel._compiled is None and kernel._failed == {"cpu"}
