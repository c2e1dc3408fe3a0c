"""Scratchpad (routed causal) attention over a compact cache of routed tokens.

``scratchpad_attn`` is the public op (compact torch path now; the Triton kernels plug in on CUDA),
``naive_scratchpad_attn`` its dense twin with the same signature, ``compact_routed`` turns a routing
mask into the ``(indices, counts)`` both take, ``scratchpad_decode`` serves one query per stream.
"""

from tsham.ops.scratchpad.compact import compact_routed, compact_scratchpad_attn, scratchpad_decode
from tsham.ops.scratchpad.naive import naive_scratchpad_attn

scratchpad_attn = compact_scratchpad_attn

__all__ = ["compact_routed", "naive_scratchpad_attn", "scratchpad_attn", "scratchpad_decode"]
