"""Surprise routing: keep the tokens the recurrent state failed to predict."""

from __future__ import annotations

import torch

from tsham.ham.routers.base import Router, RouterInput


def surprise_ratio(error: torch.Tensor, value: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """||e_t||^2 / (||v_t||^2 + eps) per head: ``[B, T, H, V]`` x2 -> ``[B, T, H]``."""
    return error.float().pow(2).sum(-1) / (value.float().pow(2).sum(-1) + eps)


class SurpriseRouter(Router):
    """Routes token t when its relative GDN prediction error passes the threshold.

    Args:
        aggregate: how heads are combined into one decision per token: ``"min"`` (every head must be
            surprised, the paper's reported choice), ``"mean"`` or ``"max"``.
        per_head: route each head on its own error instead (masks differ across heads).
        **kwargs: threshold / target / controller_lr / cap / sinks of :class:`Router`.
    """

    AGGREGATES = ("min", "mean", "max")

    def __init__(self, d_model, layer_idx, num_heads, aggregate: str = "min", per_head: bool = False, **kwargs):
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        if aggregate not in self.AGGREGATES:
            raise ValueError(f"SurpriseRouter: aggregate must be one of {self.AGGREGATES}; got {aggregate!r}")
        self.aggregate, self.per_head = aggregate, per_head

    def score(self, inp: RouterInput) -> torch.Tensor:
        ratio = surprise_ratio(inp.error, inp.value)  # (B, T, H)
        if self.per_head:
            return ratio
        return getattr(ratio, {"min": "amin", "mean": "mean", "max": "amax"}[self.aggregate])(-1)
