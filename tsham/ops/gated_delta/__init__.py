"""Gated delta rule with per-token prediction error: chunked torch, fla-core on CUDA, naive reference."""

from tsham.ops.gated_delta.chunk import chunk_gated_delta, gated_delta
from tsham.ops.gated_delta.naive import naive_gated_delta

__all__ = ["chunk_gated_delta", "gated_delta", "naive_gated_delta"]
