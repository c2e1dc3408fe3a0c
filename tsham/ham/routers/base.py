"""The router contract: every routing policy turns per-token evidence into a hard mask over tokens.

A router is built as ``Router(d_model, layer_idx, num_heads, **policy_kwargs)`` and called with a
:class:`RouterInput`; it returns a :class:`RouterOutput` whose ``mask`` ``[B, T, H]`` says which tokens
enter the scratchpad. Score-based policies share the threshold machinery here: a fixed threshold
(the cache grows with the data), or a feedback controller that drives the threshold toward a target
fraction while training, plus an optional cap (only the last ``cap`` routed tokens stay visible,
with ``sinks`` first ones kept), which bounds the cache in streaming use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsham.ops.backend import capturing


@dataclass
class RouterInput:
    """What a router may look at for a chunk of T tokens (all ``[B, T, ...]``, time-major).

    Attributes:
        x: layer input ``[B, T, D]``.
        x_prev: layer input one step earlier ``[B, T, D]`` (zeros before the first token).
        error: GDN prediction error e_t ``[B, T, H, V]`` (detached).
        value: GDN values v_t ``[B, T, H, V]`` (detached).
        flags: external event flags ``[B, T, F]`` or None.
        oracle_mask: given routing ``[B, T]`` or ``[B, T, H]`` bool, or None.
        offset: absolute position of the first token (streaming).
        valid: ``[B, T]`` bool, the tokens that may enter the scratchpad, or None for all. False on the padding
            before a series' first observation (a short series left-padded to the model's window): the layer
            never routes it, and a target fraction counts only valid tokens (all tokens in a step being captured
            into a CUDA graph: :meth:`Router.threshold`).
        key: the scratchpad keys ``[B, T, H, K]`` (detached, as they would be cached), or None.
        attention: ``[B, T]`` what the stream's last tokens' scratchpad attention reads (detached; given only while
            training a router with ``attention_queries`` set, :func:`tsham.ham.routers.distilled.read_attention`),
            or None.
    """

    x: torch.Tensor
    x_prev: torch.Tensor
    error: torch.Tensor
    value: torch.Tensor
    flags: torch.Tensor | None = None
    oracle_mask: torch.Tensor | None = None
    offset: int = 0
    valid: torch.Tensor | None = None
    key: torch.Tensor | None = None
    attention: torch.Tensor | None = None


@dataclass
class RouterOutput:
    """A routing decision.

    Attributes:
        mask: ``[B, T, H]`` bool, True where the token enters the scratchpad.
        scores: ``[B, T, H]`` float routing score (None for score-free policies).
        value_scale: ``[B, T, H]`` multiplier on the cached values carrying the task gradient to a learned
            router (1 in value), or None.
        aux_loss: scalar auxiliary loss of the router (e.g. the uncertainty fit), or None.
        window: visible routed tokens per query (the cap), or None for all.
        sinks: with ``window``, the first routed tokens that always stay visible.
    """

    mask: torch.Tensor
    scores: torch.Tensor | None = None
    value_scale: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    window: int | None = None
    sinks: int = 0


def per_head(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, T]`` -> ``[B, T, H]`` (broadcast view); ``[B, T, H]`` passes through."""
    return x[..., None].expand(*x.shape, num_heads) if x.dim() == 2 else x


def target_quantile(scores: torch.Tensor, fraction: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The threshold that routes ``fraction`` of ``scores``: halfway between the m-th and (m+1)-th largest score,
    m = round(fraction * n). Not the m-th score itself: the same tokens stepped one at a time score within float
    rounding of the parallel pass, and a threshold equal to one of them flipped that token's routing.

    ``valid`` (``[B, T]`` bool, scores ``[B, T]`` or ``[B, T, H]``): only those tokens count, n is their number.
    The count stays on the device (a sort and two gathers, no host sync), yet a CUDA graph's capture failed on it
    (H200, 2026-12-01), so :meth:`Router.threshold` does not pass ``valid`` while capturing."""
    if valid is not None:
        return _valid_quantile(scores.detach().float(), fraction, valid)
    flat = scores.detach().flatten().float()
    n, m = flat.numel(), round(fraction * flat.numel())
    if m == 0:
        return flat.max() + 1.0  # route nothing
    if m == n:
        return flat.min() - 1.0  # route everything
    return (flat.kthvalue(n - m + 1).values + flat.kthvalue(n - m).values) / 2


def _valid_quantile(scores: torch.Tensor, fraction: float, valid: torch.Tensor) -> torch.Tensor:
    """:func:`target_quantile` over the valid tokens' scores, m and n as device tensors (a batch without valid
    tokens falls back to every token's quantile, so the controller's tau stays finite)."""
    keep = per_head(valid, scores.shape[-1]) if scores.dim() == 3 else valid
    ranked = torch.where(keep, scores, -torch.inf).flatten().sort(descending=True).values  # valid ones first
    n = keep.sum()
    m = torch.round(fraction * n.double()).long()
    last = (n - 1).clamp_min(0)
    at = lambda i: ranked.index_select(0, i.clamp(0, last).view(1))[0]  # noqa: E731  a tensor index: no sync
    middle = (at(m - 1) + at(m)) / 2  # the m-th and (m+1)-th largest
    quantile = torch.where(m == 0, ranked[0] + 1.0, torch.where(m >= n, at(last) - 1.0, middle))
    return torch.where(n > 0, quantile, target_quantile(scores, fraction))


class Router(nn.Module):
    """Base of every routing policy: scores -> threshold (fixed or controlled) -> mask.

    Args:
        d_model: width of the layer input. layer_idx: depth of the layer (for per-layer policies).
        num_heads: scratchpad heads; masks are ``[B, T, H]``.
        threshold: initial threshold tau; a token is routed when ``score >= tau``.
        target: target routed fraction. While training, after every forward the controller moves tau toward
            the batch's score quantile at that fraction, ``tau += controller_lr * (q_batch - tau)``: the realised
            fraction converges geometrically whatever the router's score scale. None keeps tau fixed. (The plain
            feedback ``tau += lr * (realised - target)`` crawled on surprise ratios near 1e-2 and oscillated on
            narrow sigmoid scores: no single lr suits every router.) The first training forward with a target
            sets tau to its batch quantile outright, so ``threshold`` only matters without a target.
        controller_lr: fraction of the way tau moves toward the batch quantile per forward (0 < lr <= 1).
        cap: keep only the last ``cap`` routed tokens visible to each query (bounded cache), or None.
        sinks: with ``cap``, the first ``sinks`` routed tokens stay visible.
    """

    def __init__(
        self,
        d_model: int,
        layer_idx: int,
        num_heads: int,
        threshold: float = 0.5,
        target: float | None = None,
        controller_lr: float = 0.1,
        cap: int | None = None,
        sinks: int = 0,
    ):
        super().__init__()
        if target is not None and not 0.0 <= target <= 1.0:
            raise ValueError(f"{type(self).__name__}: target fraction must lie in [0, 1]; got {target}")
        if not 0.0 < controller_lr <= 1.0:
            raise ValueError(f"{type(self).__name__}: controller_lr must lie in (0, 1]; got {controller_lr}")
        if cap is not None and cap < 1:
            raise ValueError(f"{type(self).__name__}: cap must be a positive number of tokens or None; got {cap}")
        self.d_model, self.layer_idx, self.num_heads = d_model, layer_idx, num_heads
        self.target, self.controller_lr, self.cap, self.sinks = target, controller_lr, cap, sinks
        self.register_buffer("tau", torch.tensor(float(threshold)))
        self.budgetable = True  # False where the policy, not a threshold, decides how much is routed
        self.calibrated = False  # set by the first training forward with a target (a resumed run restores it)
        # a training guide (train_probe_model's curriculum_guide): while True the layer routes the needles it is
        # given as oracle_mask on top of this router's own tokens; not saved, the training loop sets it per stage
        self.guided = False
        # > 0: while training, the layer gives this router RouterInput.attention, what its last this many tokens read
        self.attention_queries = 0

    def bind_layer(self, key_dim: int, value_dim: int) -> None:
        """Called by the layer once, with its per-head key and value widths: a router that reads keys or values sizes
        its parameters here (none by default)."""

    def retarget(self, target: float | None) -> None:
        """Sets a new target fraction; the next training forward calibrates tau to its own batch quantile."""
        if target is not None and not 0.0 <= target <= 1.0:
            raise ValueError(f"{type(self).__name__}: target fraction must lie in [0, 1]; got {target}")
        self.target, self.calibrated = target, False

    def score(self, inp: RouterInput) -> torch.Tensor:
        """Routing score ``[B, T]`` (one decision per token) or ``[B, T, H]`` (per head); may carry gradient."""
        raise NotImplementedError

    def extras(self, inp: RouterInput, score: torch.Tensor) -> dict:
        """Optional ``value_scale`` / ``aux_loss`` of a policy, from the undetached score (none by default)."""
        return {}

    def forward(self, inp: RouterInput) -> RouterOutput:
        """inp -> RouterOutput with mask ``[B, T, H]``."""
        raw = self.score(inp)
        scores = per_head(raw.detach(), self.num_heads)
        return RouterOutput(mask=self.threshold(scores, inp.valid), scores=scores, window=self.cap,
                            sinks=self.sinks, **self.extras(inp, raw))

    def threshold(self, scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``scores >= tau``; while training with a target, then moves tau toward the target fraction of the
        ``valid`` tokens (``[B, T]`` bool; None: all; while a CUDA graph is captured: all)."""
        if not (self.training and self.target is not None):
            return scores >= self.tau
        with torch.no_grad():
            # a CUDA graph's capture failed on the valid tokens' quantile (H200, 2026-12-01: its sort or its
            # tensor-indexed gathers), so a replayed step counts every token (probe batches have no padding: the same)
            quantile = target_quantile(scores, self.target, None if capturing(scores) else valid)
            if not self.calibrated:  # the first controlled batch starts at its own quantile, not at `threshold`
                self.tau.copy_(quantile)
                self.calibrated = True
            mask = scores >= self.tau
            self.tau.add_(self.controller_lr * (quantile - self.tau))
        return mask
