"""Comparison helpers shared by the tests (FLA style: relative RMS per tensor)."""

from __future__ import annotations

import torch


def rel_rms(ref: torch.Tensor, out: torch.Tensor) -> float:
    """RMS of (ref - out) over RMS of ref."""
    ref, out = ref.detach().double(), out.detach().double()
    return ((ref - out).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float) -> None:
    """Fails with the tensor's name when the relative RMS error exceeds ``ratio`` (or shapes/finiteness differ)."""
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    err = rel_rms(ref, out)
    assert err <= ratio, f"{name}: relative RMS error {err:.3e} > {ratio:.1e}"
