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
        warmup: the stream's first ``warmup`` tokens score -1, below every ratio (>= 0): they are routed only
            when the budget exceeds the tokens after them (a finite score keeps the controller's tau finite).
            The state starts empty, so its first predictions miss every token, and a plain surprise router
            spends its budget there (the routing benchmark's maps, ``experiments/routing_positions.py``).
            Positions count from the stream's start (``RouterInput.offset``): streaming and the parallel
            forward agree.
        **kwargs: threshold / target / controller_lr / cap / sinks of :class:`Router`.
    """

    AGGREGATES = ("min", "mean", "max")

    def __init__(self, d_model, layer_idx, num_heads, aggregate: str = "min", per_head: bool = False,
                 warmup: int = 0, **kwargs):
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        if aggregate not in self.AGGREGATES:
            raise ValueError(f"SurpriseRouter: aggregate must be one of {self.AGGREGATES}; got {aggregate!r}")
        if warmup < 0:
            raise ValueError(f"SurpriseRouter: warmup must be a number of tokens >= 0; got {warmup}")
        self.aggregate, self.per_head, self.warmup = aggregate, per_head, warmup

    def score(self, inp: RouterInput) -> torch.Tensor:
        ratio = surprise_ratio(inp.error, inp.value)  # (B, T, H)
        if not self.per_head:
            ratio = getattr(ratio, {"min": "amin", "mean": "mean", "max": "amax"}[self.aggregate])(-1)
        if self.warmup > inp.offset:  # some of these tokens lie in the warm-up
            T = ratio.shape[1]
            early = torch.arange(inp.offset, inp.offset + T, device=ratio.device) < self.warmup  # (T,)
            ratio = ratio.masked_fill(early.view(1, T, *([1] * (ratio.dim() - 2))), -1.0)
        return ratio
