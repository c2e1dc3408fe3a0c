"""Policies whose routing does not depend on a score: all, none, recency (+ sinks), oracle."""

from __future__ import annotations

import torch

from tsham.ham.routers.base import Router, RouterInput, RouterOutput, per_head


class _FixedRouter(Router):
    """Base of score-free policies: no threshold, no controller."""

    def __init__(self, d_model, layer_idx, num_heads, **kwargs):
        if kwargs.get("target") is not None:
            raise ValueError(f"{type(self).__name__}: this policy has no threshold; a target fraction cannot be set")
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.budgetable = False

    def route(self, inp: RouterInput) -> torch.Tensor:
        """Mask ``[B, T]`` or ``[B, T, H]``."""
        raise NotImplementedError

    def forward(self, inp: RouterInput) -> RouterOutput:
        return RouterOutput(mask=per_head(self.route(inp), self.num_heads), window=self.cap, sinks=self.sinks)


class AllRouter(_FixedRouter):
    """Every token is routed: the scratchpad is full causal attention (with ``cap``: sliding window). As for every
    policy, the layer drops the invalid tokens (a short series' left padding, ``RouterInput.valid``)."""

    def route(self, inp):
        return torch.ones(inp.x.shape[:2], dtype=torch.bool, device=inp.x.device)


class NoneRouter(_FixedRouter):
    """Nothing is routed: the layer is a pure Gated DeltaNet."""

    def route(self, inp):
        return torch.zeros(inp.x.shape[:2], dtype=torch.bool, device=inp.x.device)


class RecencyRouter(_FixedRouter):
    """Every token is routed but each query sees only the last ``window`` tokens plus ``sinks`` first ones.

    Args:
        window: recent tokens visible to each query. sinks: first tokens that stay visible.
    """

    def __init__(self, d_model, layer_idx, num_heads, window: int = 64, sinks: int = 4, **kwargs):
        if window < 1:
            raise ValueError(f"RecencyRouter: window must be >= 1; got {window}")
        if "cap" in kwargs:  # its cap is its window: one name, not two that could disagree
            raise ValueError("RecencyRouter: give window=N (the recent tokens each query sees), not cap")
        super().__init__(d_model, layer_idx, num_heads, cap=window, sinks=sinks, **kwargs)

    def route(self, inp):
        return torch.ones(inp.x.shape[:2], dtype=torch.bool, device=inp.x.device)


class OracleRouter(_FixedRouter):
    """Routes exactly the tokens a probe names: ``oracle_mask`` ``[B, T]`` or ``[B, T, H]`` bool."""

    def route(self, inp):
        B, T = inp.x.shape[:2]
        m = inp.oracle_mask
        if m is None:
            raise ValueError("OracleRouter: this router needs oracle_mask [B, T] or [B, T, H]; none was given")
        if tuple(m.shape[:2]) != (B, T) or m.dim() not in (2, 3) or (m.dim() == 3 and m.shape[2] != self.num_heads):
            raise ValueError(f"OracleRouter: oracle_mask must be [B={B}, T={T}] or [B, T, H={self.num_heads}]; "
                             f"got {tuple(m.shape)}")
        return m.bool()
