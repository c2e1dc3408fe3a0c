"""Uncertainty routing: keep the tokens the model expected to be hard before it saw them."""

from __future__ import annotations

import torch
from torch import nn

from tsham.ham.routers.base import Router, RouterInput
from tsham.ham.routers.surprise import surprise_ratio


class UncertaintyRouter(Router):
    """Predicts the coming token's surprise from the previous token's input; routes when it is high.

    A linear head on ``x_{t-1}`` outputs ``log sigma_t^2``, fitted to the realised relative error
    ``r_t = ||e_t||^2 / ||v_t||^2`` by the Gaussian-scale NLL ``log sigma^2 + r / sigma^2`` (its minimiser
    is ``sigma^2 = E[r]``), returned as ``aux_loss``. The score is ``sigma_t^2``: an anticipated surprise,
    so a scheduled event can be routed even when the state happens to predict it.

    Args:
        per_head: one prediction per head instead of one per token.
        **kwargs: threshold / target / controller_lr / cap / sinks of :class:`Router`.
    """

    def __init__(self, d_model, layer_idx, num_heads, per_head: bool = False, **kwargs):
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.per_head = per_head
        self.log_var = nn.Linear(d_model, num_heads if per_head else 1)
        nn.init.constant_(self.log_var.bias, -1.0)  # predicted surprise starts near exp(-1)

    def score(self, inp: RouterInput) -> torch.Tensor:
        log_var = self.log_var(inp.x_prev).float()  # (B, T, 1 or H)
        return (log_var if self.per_head else log_var[..., 0]).exp()

    def extras(self, inp: RouterInput, score: torch.Tensor) -> dict:
        ratio = surprise_ratio(inp.error, inp.value)  # (B, T, H)
        ratio = ratio if self.per_head else ratio.mean(-1)
        return {"aux_loss": (score.log() + ratio.detach() / score).mean()}
