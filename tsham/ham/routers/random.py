"""Random routing at a given budget: the control every informed policy must beat."""

from __future__ import annotations

import torch

from tsham.ham.routers.base import Router, RouterInput

_MASK32 = 0xFFFFFFFF


def position_hash(b: torch.Tensor, t: torch.Tensor, salt: int) -> torch.Tensor:
    """Uniform [0, 1) numbers that depend only on (stream b, position t, salt): integer mixing (murmur3 fmix).

    Being a pure function of position keeps streaming step-by-step routing identical to the parallel forward.
    """
    h = (t * 0x9E3779B1 + b * 0x85EBCA77 + salt * 0xC2B2AE3D) & _MASK32
    for mult in (0x85EBCA6B, 0xC2B2AE35):
        h = ((h ^ (h >> 16)) * mult) & _MASK32
    h = h ^ (h >> 16)
    return h.double().div(2.0**32).float()


class RandomRouter(Router):
    """Routes each token with probability ``fraction``, reproducibly (a hash of stream, position, layer, seed).

    Args:
        fraction: routed fraction in expectation (the budget to match); sets ``tau = 1 - fraction``.
        seed: changes the draw.
        per_head: independent draws per head.
        **kwargs: cap / sinks of :class:`Router` (a target controller is allowed but unnecessary).
    """

    def __init__(self, d_model, layer_idx, num_heads, fraction: float = 0.1, seed: int = 0, per_head: bool = False,
                 **kwargs):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"RandomRouter: fraction must lie in [0, 1]; got {fraction}")
        kwargs.setdefault("threshold", 1.0 - fraction)
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.seed, self.per_head = seed, per_head

    def score(self, inp: RouterInput) -> torch.Tensor:
        B, T = inp.x.shape[:2]
        dev = inp.x.device
        b = torch.arange(B, device=dev, dtype=torch.int64)[:, None]
        t = torch.arange(inp.offset, inp.offset + T, device=dev, dtype=torch.int64)[None, :]
        salt = self.seed * 1000 + self.layer_idx
        if not self.per_head:
            return position_hash(b, t, salt)
        return torch.stack([position_hash(b, t, salt * 64 + h) for h in range(self.num_heads)], -1)
