"""Scratchpad (routed causal) attention over a compact cache of routed tokens.

``scratchpad_attn`` / ``scratchpad_decode`` are the public ops: Triton kernels on CUDA (``parallel.py``),
plain torch over the gathered slots elsewhere (``compact.py``); ``naive_scratchpad_attn`` is the dense twin
with the same signature; ``compact_routed`` turns a routing mask into the ``(indices, counts)`` all take.
"""

from __future__ import annotations

import torch

from tsham.ops.backend import use_fused
from tsham.ops.scratchpad.compact import compact_routed, compact_scratchpad_attn, torch_scratchpad_decode
from tsham.ops.scratchpad.naive import naive_scratchpad_attn
from tsham.ops.scratchpad.parallel import parallel_scratchpad_attn, parallel_scratchpad_decode


def scratchpad_attn(q, k, v, indices, counts, scale=None, window=None, sinks=0) -> torch.Tensor:
    """Routed causal attention ``[B, T, H, V]``: Triton on CUDA, torch elsewhere (see naive_scratchpad_attn)."""
    op = parallel_scratchpad_attn if use_fused(q) else compact_scratchpad_attn
    return op(q, k, v, indices, counts, scale=scale, window=window, sinks=sinks)


def scratchpad_decode(q, k_cache, v_cache, counts, scale=None, window=None, sinks=0) -> torch.Tensor:
    """One query per stream ``[B, H, V]``: Triton on CUDA, torch elsewhere (see torch_scratchpad_decode)."""
    op = parallel_scratchpad_decode if use_fused(q) else torch_scratchpad_decode
    return op(q, k_cache, v_cache, counts, scale=scale, window=window, sinks=sinks)


__all__ = [
    "compact_routed",
    "compact_scratchpad_attn",
    "naive_scratchpad_attn",
    "parallel_scratchpad_attn",
    "parallel_scratchpad_decode",
    "scratchpad_attn",
    "scratchpad_decode",
    "torch_scratchpad_decode",
]
