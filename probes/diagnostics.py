"""Router diagnostics of a probe forward (PROBES.md): what each HAM layer kept and where its queries looked.

Per example, averaged over layers and heads:

- ``capture_rate``: share of the needle's context tokens resident in the scratchpad at query time (routed and,
  under a cap or recency window, still visible to the first forecast token); NaN without a needle token;
- ``slot_precision``: share of the resident context tokens that are needle tokens (NaN where none is resident);
- ``needle_attention``: scratchpad attention mass that the forecast tokens put on needle tokens (0 where a
  query's scratchpad is empty);
- ``wake_capture`` / ``wake_attention``: the same two for the needle's wake, the :data:`WAKE_TOKENS` context tokens
  right after each needle run (not needles themselves; NaN / 0 where a needle has none). A layer's input at those
  tokens carries the needle through the layer below's recurrent state, so a model can read the needle there: on
  probe A at 256 tokens full attention's second layer put 55% of a head's mass on the two tokens after the motif
  and 1% on the motif itself (experiments/README.md, fourteenth session);
- ``kv_fraction``: share of the tokens a stream could route (all but a short series' left padding) held in the
  scratchpad at the end (the routed tokens; under a cap or a recency window at most ``cap + sinks`` of them, as a
  stream state keeps): the realised budget, whose p95 and
  max over examples come from :func:`tsham.probes.runner.summarise`; ``kv_bytes``: the bytes of those keys and
  values summed over layers and heads (fp32, as a stream state stores them).

RS against capture rate separates routing failures (the needle was never kept) from readout failures (it was
kept but the model did not use it).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from tsham.model import TshamModel, TshamOutput
from tsham.ops.scratchpad.naive import masked_probs, routed_visibility

CACHE_BYTES_PER_VALUE = 4  # a stream state keeps routed keys and values in fp32
WAKE_TOKENS = 2  # the tokens after a needle that count as its wake (probe A's reads sat on these two)


@dataclass
class LayerRead:
    """One HAM layer's forward, recorded: its input x ``[B, T, D]`` (after the block norm) and its two memory
    reads ``o_gdn``, ``o_kv`` ``[B, T, H, V]`` (detached)."""

    x: torch.Tensor
    o_gdn: torch.Tensor
    o_kv: torch.Tensor


@contextmanager
def recorded_reads(model: TshamModel):
    """Within the block, every HAM layer's forward appends a :class:`LayerRead` to the list it yields."""
    reads, layers = [], [block.mixer for block in model.stack.blocks]

    def wrap(merge):
        def recording(x, o_gdn, o_kv):
            reads.append(LayerRead(x.detach(), o_gdn.detach().float(), o_kv.detach().float()))
            return merge(x, o_gdn, o_kv)
        return recording

    for layer in layers:
        layer.merge = wrap(layer.merge)  # an instance attribute shadows the method
    try:
        yield reads
    finally:
        for layer in layers:
            del layer.merge


def needle_tokens(needles: np.ndarray, patch_length: int, n_tokens: int, align: str) -> np.ndarray:
    """Needle steps ``[N, L]`` -> needle patch tokens ``[N, n_tokens]`` (a token is a needle when any of its steps
    is), cut as :class:`TshamModel` cuts patches (``align`` "end" left-pads the context to whole patches)."""
    N, L = needles.shape
    pad = (-L) % patch_length if align == "end" else 0
    steps = np.pad(needles.astype(bool), ((0, 0), (pad, n_tokens * patch_length - L - pad)))
    return steps.reshape(N, n_tokens, patch_length).any(2)


def wake_tokens(needle: torch.Tensor, n_ctx: int, width: int = WAKE_TOKENS) -> torch.Tensor:
    """Needle tokens ``[N, T]`` (bool) -> the ``width`` context tokens right after each needle run (the run's wake),
    needles and forecast tokens excluded ``[N, T]``."""
    wake = torch.zeros_like(needle)
    for shift in range(1, width + 1):
        wake[:, shift:] |= needle[:, :-shift]
    wake &= ~needle
    wake[:, n_ctx:] = False
    return wake


def resident_slots(model: TshamModel, out: TshamOutput) -> list[torch.Tensor]:
    """Per layer, the scratchpad slots a stream holds at the end ``[N, H]``: its routed tokens, at most
    ``cap + sinks`` of them under a cap or recency window (as a stream state keeps). Divided by the tokens it could
    route (``LayerDiagnostics.valid``; all ``T`` without padding) this is the realised KV fraction."""
    slots = []
    for block, diag in zip(model.stack.blocks, out.layers, strict=True):
        router, count = block.mixer.router, diag.mask.sum(1)
        slots.append(count if router.cap is None else count.clamp(max=router.cap + router.sinks))
    return slots


@torch.no_grad()
def router_diagnostics(model: TshamModel, out: TshamOutput, reads: list[LayerRead], needles: np.ndarray,
                       align: str | None = None) -> dict[str, np.ndarray]:
    """Per-example diagnostics ``{name: [N]}`` (module docstring) of a forward recorded by :func:`recorded_reads`.

    Args:
        out: that forward's output (its per-layer masks). reads: its :class:`LayerRead` per layer.
        needles: bool ``[N, L]`` needle steps of the context. align: how patches were cut (default the model's).
    """
    if len(reads) != len(out.layers):
        raise ValueError(f"router_diagnostics: {len(reads)} recorded layers for {len(out.layers)} in the output; "
                         "record exactly one forward")
    N, n_ctx = len(needles), out.num_context_patches
    first = out.layers[0].mask
    T = first.shape[1]
    if first.shape[0] != N:
        raise ValueError(f"router_diagnostics: {first.shape[0]} token streams for {N} examples (channel-independent "
                         "models route each channel on its own; probes use channel-mixing models)")
    needle = torch.as_tensor(needle_tokens(needles, model.config.patch.patch_length, T,
                                           align or model.config.align), device=first.device)
    ctx_needle = needle[:, :n_ctx, None].float()  # (N, n_ctx, 1)
    wake = wake_tokens(needle, n_ctx)
    ctx_wake = wake[:, :n_ctx, None].float()
    ham = model.config.ham
    per_layer = {k: [] for k in ("capture_rate", "slot_precision", "needle_attention", "wake_capture",
                                 "wake_attention", "kv_fraction", "kv_bytes")}
    for block, diag, read, slots in zip(model.stack.blocks, out.layers, reads, resident_slots(model, out),
                                        strict=True):
        layer, kept = block.mixer, diag.mask
        vis = routed_visibility(kept, layer.router.cap, layer.router.sinks)[:, :, n_ctx:]  # forecast queries
        resident = vis[:, :, 0, :n_ctx].permute(0, 2, 1).float()  # (N, n_ctx, H): what the first forecast sees
        hits = (resident * ctx_needle).sum(1)  # (N, H)
        needle_count = ctx_needle.sum(1)  # (N, 1)
        per_layer["capture_rate"].append(torch.where(needle_count > 0, hits / needle_count.clamp_min(1),
                                                     torch.nan).mean(1))
        seen = resident.sum(1)
        wake_count, wake_hits = ctx_wake.sum(1), (resident * ctx_wake).sum(1)
        per_layer["wake_capture"].append(torch.where(wake_count > 0, wake_hits / wake_count.clamp_min(1),
                                                     torch.nan).mean(1))
        per_layer["slot_precision"].append(torch.where(seen > 0, hits / seen.clamp_min(1), torch.nan).nanmean(1))
        per_layer["kv_fraction"].append(slots.float().mean(1) / diag.routable().clamp_min(1))
        per_layer["kv_bytes"].append(slots.sum(1).double() * (ham.head_dim + ham.head_dim_v) * CACHE_BYTES_PER_VALUE)
        q, k = layer.project(read.x)[:2]
        q, k = layer.kv_read_inputs(q, k, x=read.x)
        probs = masked_probs(q[:, n_ctx:], k, vis, 1.0)  # (N, H, F, T)
        per_layer["needle_attention"].append((probs * needle[:, None, None, :].float()).sum(-1).mean((1, 2)))
        per_layer["wake_attention"].append((probs * wake[:, None, None, :].float()).sum(-1).mean((1, 2)))
    # bytes add up over layers; shares are averaged (precision over the layers that kept something)
    agg = {"kv_bytes": lambda t: t.sum(0), "slot_precision": lambda t: t.nanmean(0)}
    return {name: agg.get(name, lambda t: t.mean(0))(torch.stack(v)).cpu().numpy() for name, v in per_layer.items()}
