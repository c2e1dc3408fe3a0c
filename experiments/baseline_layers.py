"""Baseline mixers of the same width as a HAM layer: a Gated DeltaNet alone, and softmax attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tsham.ham import HamConfig, HamLayer
from tsham.ops import gated_delta


class GdnLayer(HamLayer):
    """The HAM layer without router, scratchpad and merge gates: ``x: [B, T, D] -> [B, T, D]``."""

    def __init__(self, config: HamConfig, layer_idx: int = 0):
        super().__init__(HamConfig(**{**config.to_dict(), "router": "none", "router_kwargs": {}}), layer_idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, g, beta, _ = self.project(x)
        o, _, _ = gated_delta(q, k, v, g, beta)
        o = F.rms_norm(o, (o.shape[-1],), self.gdn_norm, self.config.norm_eps)
        return self.o_proj((rearrange(o, "b t h v -> b t (h v)") * F.silu(self.gate_proj(x))).to(x.dtype))


class AttentionLayer(nn.Module):
    """Causal softmax attention with the HAM layer's head layout: ``x: [B, T, D] -> [B, T, D]``."""

    def __init__(self, config: HamConfig):
        super().__init__()
        H, K, V = config.num_heads, config.head_dim, config.head_dim_v
        self.shape = (H, K, V)
        self.qkv_proj = nn.Linear(config.d_model, H * (2 * K + V), bias=False)
        self.o_proj = nn.Linear(H * V, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, K, V = self.shape
        q, k, v = self.qkv_proj(x).split([H * K, H * K, H * V], -1)
        q, k, v = (rearrange(t, "b t (h d) -> b h t d", h=H) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(rearrange(o, "b h t v -> b t (h v)"))
