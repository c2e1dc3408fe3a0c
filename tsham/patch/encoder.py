"""Multivariate patch encoder: [B, T, C] values + observed mask -> patch tokens [B, N, D]."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import nn


class ChannelRole(IntEnum):
    """What a channel is to the model (an embedding per role)."""

    TARGET = 0  # forecast it
    PAST_COVARIATE = 1  # known only up to now
    FUTURE_COVARIATE = 2  # known ahead (calendars, plans)
    EVENT_FLAG = 3  # 0/1 external events (actions, interventions, schedules); routers may read them


@dataclass
class PatchConfig:
    """Patching and embedding of the series front end."""

    patch_length: int = 16  # time steps per patch
    stride: int = 16  # step between patch starts (== patch_length: no overlap)
    d_model: int = 64  # token width (the HAM stack's d_model)
    channel_id_dim: int = 16  # sinusoidal channel-identity features (any channel count works)
    channel_independent: bool = False  # PatchTST-style: one token stream per channel instead of one per patch
    # Adds a term linear in each channel's values along a direction of its own (the outer product of its identity
    # features and its patch), so a token can hold a multichannel pattern (a key, a binding) exactly; the GELU
    # mean alone mixes channels through one shared value direction and learns such patterns slowly, if at all.
    bind_channels: bool = False

    def __post_init__(self):
        if self.patch_length <= 0 or self.stride <= 0 or self.stride > self.patch_length:
            raise ValueError(f"PatchConfig: need 0 < stride <= patch_length; got stride={self.stride}, "
                             f"patch_length={self.patch_length}")
        if self.bind_channels and self.channel_independent:
            raise ValueError("PatchConfig: bind_channels binds channels within a token; channel_independent tokens "
                             "hold one channel each, so the two cannot be combined")


def channel_identity(num_channels: int, dim: int, device=None) -> torch.Tensor:
    """Sinusoidal features ``[C, dim]`` of the channel index: no channel count is baked into the weights."""
    index = torch.arange(num_channels, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(100.0) * torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    return torch.cat([torch.sin(index * freq), torch.cos(index * freq)], -1)[:, :dim]


def patchify(x: torch.Tensor, patch_length: int, stride: int) -> torch.Tensor:
    """``[B, T, C] -> [B, N, C, P]`` with N = number of patches; T is left-padded (as zeros) to fit whole patches.

    Left padding keeps the most recent step at the end of the last patch.
    """
    T = x.shape[1]
    n = max(1, math.ceil((T - patch_length) / stride) + 1)
    pad = (n - 1) * stride + patch_length - T
    x = F.pad(x, (0, 0, pad, 0))
    return x.unfold(1, patch_length, stride)  # (B, N, C, P)


class PatchEncoder(nn.Module):
    """Values and observed mask per channel -> one token per patch (or per patch and channel).

    Each (patch, channel) is embedded from its scaled values and its observed mask, plus a role embedding and
    channel-identity features, through a nonlinearity; the multivariate mode then averages over channels,
    so a token can carry "which channel did what" (cross-channel binding) for any number of channels.

    Args:
        config: :class:`PatchConfig`.

    Shapes: ``values, observed: [B, T, C]``, ``roles: [C]`` -> tokens ``[B, N, D]`` (multivariate) or
    ``[B * C, N, D]`` (channel-independent), token mask ``[B, N]`` / ``[B * C, N]`` (any observed step).
    """

    def __init__(self, config: PatchConfig):
        super().__init__()
        self.config = config
        P, D = config.patch_length, config.d_model
        self.value_proj = nn.Linear(2 * P, D)  # values and observed mask of a patch
        self.role_embed = nn.Embedding(len(ChannelRole), D)
        self.id_proj = nn.Linear(config.channel_id_dim, D, bias=False)
        self.out_proj = nn.Linear(D, D)
        if config.bind_channels:
            self.bind_proj = nn.Linear(config.channel_id_dim * 2 * P, D, bias=False)

    def forward(self, values: torch.Tensor, observed: torch.Tensor, roles: torch.Tensor | None = None):
        """values, observed ``[B, T, C]`` (values scaled, 0 where missing) -> tokens, token mask."""
        if values.dim() != 3 or observed.shape != values.shape:
            raise ValueError(f"PatchEncoder: values and observed must both be [B, T, C]; got {tuple(values.shape)} "
                             f"and {tuple(observed.shape)}")
        B, T, C = values.shape
        if roles is None:
            roles = torch.zeros(C, dtype=torch.long, device=values.device)
        if roles.shape != (C,):
            raise ValueError(f"PatchEncoder: roles must be [C={C}]; got {tuple(roles.shape)}")
        c = self.config
        v = patchify(values.float() * observed, c.patch_length, c.stride)  # (B, N, C, P)
        m = patchify(observed.float(), c.patch_length, c.stride)
        h = self.value_proj(torch.cat([v, m], -1))  # (B, N, C, D)
        h = h + self.role_embed(roles.long()) + self.id_proj(channel_identity(C, c.channel_id_dim, values.device))
        h = F.gelu(h)
        token_mask = m.amax(-1) > 0  # (B, N, C): the patch has an observed step
        if c.channel_independent:
            tokens = self.out_proj(h).permute(0, 2, 1, 3).reshape(B * C, -1, c.d_model)
            return tokens, token_mask.permute(0, 2, 1).reshape(B * C, -1)
        tokens = self.out_proj(h.mean(2))  # (B, N, D)
        if c.bind_channels:
            ids = channel_identity(C, c.channel_id_dim, values.device)  # (C, I)
            # / sqrt(C): independent channels add up in scale like a sum, not like a mean
            bound = torch.einsum("ci,bncp->bnip", ids, torch.cat([v, m], -1)) / math.sqrt(C)  # (B, N, I, 2P)
            tokens = tokens + self.bind_proj(bound.flatten(2))
        return tokens, token_mask.any(-1)
