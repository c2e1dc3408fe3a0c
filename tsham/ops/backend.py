"""Which path an op takes: the fused GPU kernels, or the plain-torch ones (``TSHAM_BACKEND=torch``).

The fused kernels (fla-core's gated delta rule, tsham's Triton scratchpad) compile and autotune on their
first call: minutes on a cold machine. For short sequences (a few hundred tokens) every path is bound by
kernel launches, so a short run on a fresh GPU can be faster on the torch path. ``auto`` (the default)
uses the fused kernels for every CUDA tensor.
"""

from __future__ import annotations

import os

BACKENDS = ("auto", "torch")


def use_fused(tensor) -> bool:
    """True when ``tensor`` lives on CUDA and ``TSHAM_BACKEND`` is not ``torch``."""
    backend = os.environ.get("TSHAM_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"TSHAM_BACKEND must be one of {BACKENDS}; got {backend!r}")
    return tensor.is_cuda and backend == "auto"
