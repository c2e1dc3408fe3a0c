"""Input validation shared by the ops: every bad shape raises a ValueError that prints the shapes."""

from __future__ import annotations

import torch


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, op: str) -> tuple[int, int, int, int, int]:
    """Checks q, k: [B, T, H, K] and v: [B, T, H, V]; returns (B, T, H, K, V)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{op}: q, k, v must be [B, T, H, D]; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.shape != k.shape or q.shape[:3] != v.shape[:3]:
        raise ValueError(f"{op}: q and k must share [B, T, H, K] and v must share [B, T, H]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, T, H, K = q.shape
    return B, T, H, K, v.shape[-1]


def check_shape(x: torch.Tensor | None, shape: tuple[int, ...], name: str, op: str) -> None:
    """Raises ValueError unless ``x`` is None or has exactly ``shape``."""
    if x is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}; got {tuple(x.shape)}")
