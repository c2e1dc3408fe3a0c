"""Learned routing: a small MLP scores each token; the task loss trains it through the kept values."""

from __future__ import annotations

import torch
from torch import nn

from tsham.ham.routers.base import Router, RouterInput, per_head


class LearnedRouter(Router):
    """``s_t = sigmoid(MLP(x_t))``, routed when ``s_t >= tau``.

    The mask is hard, so the task gradient reaches the MLP through the cached values: they are multiplied
    by ``1 + s_t - stopgrad(s_t)``, which is exactly 1 in the forward pass (routing changes nothing
    numerically) and passes ``dL/ds_t = <dL/dv_cached, v_t>`` back (a straight-through estimator).
    No auxiliary loss is needed.

    Args:
        hidden: width of the MLP (router parameters stay well under 1% of a layer's).
        per_head: one score per head.
        **kwargs: threshold / target / controller_lr / cap / sinks of :class:`Router`.
    """

    def __init__(self, d_model, layer_idx, num_heads, hidden: int = 16, per_head: bool = False, **kwargs):
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.per_head = per_head
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, num_heads if per_head else 1))

    def score(self, inp: RouterInput) -> torch.Tensor:
        s = torch.sigmoid(self.mlp(inp.x).float())  # (B, T, 1 or H)
        return s if self.per_head else s[..., 0]

    def extras(self, inp: RouterInput, score: torch.Tensor) -> dict:
        s = per_head(score, self.num_heads)
        return {"value_scale": 1.0 + s - s.detach()}
