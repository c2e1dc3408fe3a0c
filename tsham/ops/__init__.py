"""Kernels used by the HAM stack. Imports nothing else from tsham.

One folder per op, FLA-style: ``naive.py`` (plain torch, a loop over time, the reference)
beside the fast path, both with one signature and time-major ``[B, T, H, D]`` tensors.
"""

from tsham.ops.gated_delta import chunk_gated_delta, gated_delta, naive_gated_delta
from tsham.ops.scratchpad import compact_routed, naive_scratchpad_attn, scratchpad_attn, scratchpad_decode

__all__ = [
    "chunk_gated_delta",
    "compact_routed",
    "gated_delta",
    "naive_gated_delta",
    "naive_scratchpad_attn",
    "scratchpad_attn",
    "scratchpad_decode",
]
