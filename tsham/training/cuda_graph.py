"""A training step captured once as a CUDA graph and replayed, for small models whose eager step is bound by the
host launching kernels.

A probe cell's model (d_model 64, 2 HAM layers, ~140k parameters) launches about 3000 kernels per training step;
with 28 such processes sharing an H200 under MPS the host's cores, not the GPU, set the pace
(``experiments/results/bench_probe_step_h200.md``). Replaying a captured step costs one launch. The step computes
what the eager step computes, up to rounding: the capturable optimizer keeps its step count and learning rate in
fp32 device tensors, so training matches eager training to about 1e-4, not bit for bit. One difference: a
router's target-fraction controller counts every token in a replayed step, padding included (its valid-token
quantile did not capture); on batches without left padding, which probe batches are, that is the same.

The recipe is PyTorch's whole-network capture: a few eager steps on a side stream (lazy initialisation, the
optimizer's state, the routers' first calibration), then one capture of forward, backward, clipping and the
optimizer step reading fixed input tensors, into which every later batch is copied. The optimizer must be
capturable (``capturable=True`` and a tensor learning rate, which the caller updates in place).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

Batch = dict[str, torch.Tensor]


class GraphedStep:
    """``step(batch) -> loss``: runs ``eager_step`` eagerly for ``warmup`` calls, then captures it and replays it.

    Args:
        eager_step: ``(batch) -> loss``, one whole training step (forward, backward, optimizer step) on the
            batch's tensors, all on ``device``. It must not read values back to the host; the model's own input
            checks skip themselves during a capture (:func:`tsham.ops.backend.capturing`).
        device: the CUDA device the model lives on.
        warmup: eager steps before the capture (PyTorch's recipe uses 3; the first also calibrates the routers).

    Every batch is a dict of tensors ``[...]`` with the first batch's keys, shapes and dtypes (on any device; CPU
    tensors are pinned and copied asynchronously) into fixed input tensors, which ``eager_step`` must not modify.
    Every replay returns the same loss tensor, overwritten by the next step: clone it to keep it. If the capture
    fails (an op that syncs or has a shape that depends on the data), the step warns once, keeps training eagerly
    and records why in :attr:`error`; :attr:`captured` says whether replays run.
    """

    def __init__(self, eager_step: Callable[[Batch], torch.Tensor], device: torch.device, warmup: int = 3):
        if torch.device(device).type != "cuda":
            raise ValueError(f"GraphedStep: CUDA graphs need a CUDA device; got {device}")
        if warmup < 1:
            raise ValueError(f"GraphedStep: warmup must be at least 1 eager step; got {warmup}")
        self.eager_step, self.device, self.warmup = eager_step, torch.device(device), warmup
        self.side_stream = torch.cuda.Stream(self.device) if torch.cuda.is_available() else None
        self.static: Batch | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        self.error: str | None = None
        self.calls = 0

    @property
    def captured(self) -> bool:
        """True once the step is captured (later calls replay it)."""
        return self.graph is not None

    def __call__(self, batch: Batch) -> torch.Tensor:
        with torch.cuda.device(self.device):  # streams and the capture belong to the model's device
            self._load(batch)
            self.calls += 1
            if self.calls <= self.warmup:
                self.side_stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(self.side_stream):
                    loss = self.eager_step(self.static)
                torch.cuda.current_stream().wait_stream(self.side_stream)
                return loss
            if self.graph is None and self.error is None:
                self._capture()
            if self.graph is None:
                return self.eager_step(self.static)
            self.graph.replay()
            return self.loss

    def _load(self, batch: Batch) -> None:
        """Copies ``batch`` into the fixed input tensors (made from the first batch)."""
        if self.static is None:
            self.static = {k: torch.empty(v.shape, dtype=v.dtype, device=self.device) for k, v in batch.items()}
        if batch.keys() != self.static.keys():
            raise ValueError(f"GraphedStep: every batch needs the keys {sorted(self.static)}; got {sorted(batch)}")
        for key, value in batch.items():
            fixed = self.static[key]
            if value.shape != fixed.shape or value.dtype != fixed.dtype:
                raise ValueError(f"GraphedStep: batch[{key!r}] must keep the first batch's shape and dtype "
                                 f"{tuple(fixed.shape)} {fixed.dtype} (a captured step has fixed inputs); got "
                                 f"{tuple(value.shape)} {value.dtype}")
            fixed.copy_(value.pin_memory() if value.device.type == "cpu" else value, non_blocking=True)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: only this thread's CUDA calls are restricted while it captures (the loops that use
            # this draw batches in another thread, which makes no CUDA calls today but need not be audited)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                loss = self.eager_step(self.static)
        except Exception as err:  # noqa: BLE001 - any op the capture refuses: train on eagerly, say why
            self.error = f"{type(err).__name__}: {err}".strip()
            warnings.warn(f"GraphedStep: CUDA graph capture failed, training eagerly ({self.error[:300]})",
                          RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize(self.device)  # re-raises here if the failure left the device unusable
            return
        self.graph, self.loss = graph, loss
