"""Which path an op takes: the fused GPU kernels, or the plain-torch ones (``TSHAM_BACKEND=torch``).

The fused kernels (fla-core's gated delta rule, tsham's Triton scratchpad) compile and autotune on their
first call: minutes on a cold machine. For short sequences (a few hundred tokens) every path is bound by
kernel launches, so a short run on a fresh GPU can be faster on the torch path. ``auto`` (the default)
uses the fused kernels for every CUDA tensor.

Also here: what the forward needs to be captured in a CUDA graph (:func:`capturing`, :func:`device_constant`).
"""

from __future__ import annotations

import functools
import os

import torch

BACKENDS = ("auto", "torch")


def use_fused(tensor) -> bool:
    """True when ``tensor`` lives on CUDA and ``TSHAM_BACKEND`` is not ``torch``."""
    backend = os.environ.get("TSHAM_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"TSHAM_BACKEND must be one of {BACKENDS}; got {backend!r}")
    return tensor.is_cuda and backend == "auto"


def capturing(tensor) -> bool:
    """True while ``tensor``'s CUDA stream is being captured into a CUDA graph: a check that reads a value back
    from the device (``bool(x.isfinite().all())``) would sync, which a capture forbids. The eager steps before a
    capture run the checks on the same shapes; the replayed ones are not checked."""
    # is_cuda first: on a CPU-only build the capture query raises
    if not tensor.is_cuda:
        return False
    with torch.cuda.device(tensor.device):
        return torch.cuda.is_current_stream_capturing()


@functools.cache  # never evicted: a captured CUDA graph keeps reading the tensor's memory
def device_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.tensor(values)`` on ``device``, made once per (values, dtype, device) and shared: a fresh copy from
    the host on every call would wait for the GPU, and cannot be captured in a CUDA graph. Never modify it.
    Made outside inference mode, so a first call under ``torch.inference_mode()`` does not hand later training
    forwards a tensor autograd refuses to save."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)
