"""Streaming state of a HAM layer and the scratchpad cache it carries."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class HamLayerState:
    """Everything a HAM layer needs to continue a stream exactly.

    Attributes:
        gdn: recurrent state ``[B, H, K, V]`` (float32).
        conv: last ``conv_size - 1`` pre-convolution q/k/v projections ``[B, W-1, C]``.
        k_cache, v_cache: scratchpad ``[B, S, H, K]`` / ``[B, S, H, V]``; slots ``< live_counts`` are valid.
            With a window (cap) the window part is a ring buffer: attention does not depend on slot order.
        counts: tokens routed so far ``[B, H]`` (int64, not clamped by the window).
        x_prev: the layer input at the previous position ``[B, D]`` (uncertainty router).
        offset: absolute position of the next token.
        window, sinks: the cap of the router (fixed per layer).

    The routing threshold is a buffer of the router (model state, saved in checkpoints), not stream state.
    """

    gdn: torch.Tensor
    conv: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    counts: torch.Tensor
    x_prev: torch.Tensor
    offset: int = 0
    window: int | None = None
    sinks: int = 0

    @property
    def live_counts(self) -> torch.Tensor:
        """Valid cache slots ``[B, H]``."""
        return self.counts if self.window is None else self.counts.clamp(max=self.sinks + self.window)

    def append(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> None:
        """Writes the routed tokens of a chunk into the cache (in place).

        Args:
            k: ``[B, T, H, K]``, v: ``[B, T, H, V]``, mask: ``[B, T, H]`` bool, in time order.
        """
        rank = self.counts[:, None] + mask.long().cumsum(1) - 1  # (B, T, H) routed rank of each token
        total = self.counts + mask.sum(1)
        keep = mask
        if self.window is None:
            slot = rank
            self._grow(int(total.max()))
        else:  # first `sinks` routed tokens stay; the rest cycle through `window` slots
            slot = torch.where(rank < self.sinks, rank, self.sinks + (rank - self.sinks) % self.window)
            keep = mask & ((rank < self.sinks) | (rank >= total[:, None] - self.window))
            self._grow(self.sinks + self.window)
        spill = self.k_cache.shape[1] - 1  # a scratch slot for tokens that are not kept
        slot = torch.where(keep, slot, spill)
        self.k_cache.scatter_(1, slot[..., None].expand(-1, -1, -1, k.shape[-1]), k.to(self.k_cache.dtype))
        self.v_cache.scatter_(1, slot[..., None].expand(-1, -1, -1, v.shape[-1]), v.to(self.v_cache.dtype))
        self.counts = total

    def _grow(self, needed: int) -> None:
        """Ensures ``needed`` slots plus the spill slot, doubling to amortise growth."""
        S = self.k_cache.shape[1] - 1
        if needed <= S:
            return
        new = max(needed, 2 * S) + 1
        pad = (0, 0, 0, 0, 0, new - S - 1)
        self.k_cache = torch.nn.functional.pad(self.k_cache, pad)
        self.v_cache = torch.nn.functional.pad(self.v_cache, pad)

    def cache(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(k ``[B, S, H, K]``, v ``[B, S, H, V]``, live counts ``[B, H]``) without the spill slot."""
        return self.k_cache[:, :-1], self.v_cache[:, :-1], self.live_counts

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name (for saving a stream)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
