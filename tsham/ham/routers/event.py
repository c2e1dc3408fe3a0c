"""Event routing: keep the tokens that external flags mark (actions, interventions, schedules)."""

from __future__ import annotations

import torch

from tsham.ham.routers.base import Router, RouterInput


class EventRouter(Router):
    """Routes token t when any selected flag channel is set (>= threshold, default 0.5).

    Args:
        channels: indices of the flag channels to route on (None: all).
        **kwargs: threshold / cap / sinks of :class:`Router` (a target fraction is meaningless here:
            the flags decide).

    Raises:
        ValueError at call time when no flags are given or their shape is not ``[B, T, F]``.
    """

    def __init__(self, d_model, layer_idx, num_heads, channels: list[int] | None = None, **kwargs):
        if kwargs.get("target") is not None:
            raise ValueError("EventRouter: external flags decide the routing; a target fraction cannot be set")
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.channels, self.budgetable = channels, False

    def score(self, inp: RouterInput) -> torch.Tensor:
        B, T = inp.x.shape[:2]
        if inp.flags is None:
            raise ValueError("EventRouter: this router needs event flags [B, T, F]; none were given")
        if inp.flags.dim() != 3 or tuple(inp.flags.shape[:2]) != (B, T):
            raise ValueError(f"EventRouter: flags must be [B={B}, T={T}, F]; got {tuple(inp.flags.shape)}")
        flags = inp.flags if self.channels is None else inp.flags[..., self.channels]
        return flags.float().amax(-1)
