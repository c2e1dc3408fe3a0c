"""Optimizer parameter groups (one place decides what gets weight decay)."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices decay; biases, norm gains, 1-D parameters and tagged ones do not.

    A parameter opts out explicitly with ``param._no_weight_decay = True`` (HamLayer tags its decay rates,
    time-step biases and temperatures, which weight decay would pull toward meaningless values).

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95),
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (fused on CUDA unless ``fused=False``)."""
    fused = next(model.parameters()).is_cuda if fused is None else fused
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused)
