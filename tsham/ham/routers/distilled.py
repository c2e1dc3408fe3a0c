"""Distilled routing: a small MLP learns, while training, which tokens the layer's own attention reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tsham.ham.routers.base import Router, RouterInput


def read_attention(q: torch.Tensor, k: torch.Tensor, queries: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """What the stream's last ``queries`` tokens read: the largest softmax weight any of their queries, in any head,
    gives each token when every token is kept. ``q``, ``k``: the scratchpad's queries and keys ``[B, T, H, K]``
    (temperature and rotary positions applied, scale 1), ``valid``: ``[B, T]`` bool or None. Returns ``[B, T]``
    in [0, 1], detached; a query sees only tokens at or before its own (causal), never an invalid one."""
    T = q.shape[1]
    n = min(queries, T)
    logits = torch.einsum("bqhk,bthk->bhqt", q[:, T - n:].detach().float(), k.detach().float())  # (B, H, n, T)
    seen = torch.arange(T, device=q.device)[None, :] <= torch.arange(T - n, T, device=q.device)[:, None]  # (n, T)
    allowed = seen[None, None] if valid is None else seen[None, None] & valid[:, None, None, :].bool()
    weights = logits.masked_fill(~allowed, -torch.inf).softmax(-1).nan_to_num(0.0)  # a row seeing nothing: 0
    return weights.amax((1, 2))


class DistilledRouter(Router):
    """``s_t = sigmoid(MLP([k_t, v_t]))`` on the token's scratchpad key and value (all heads), routed when
    ``s_t >= tau``.

    While training, the score is fitted to what the layer's own attention reads: the attention weight the stream's
    last ``queries`` tokens would give token t if every token were kept (:func:`read_attention`, from the layer's
    scratchpad queries and keys; the forecast is read there), by binary cross-entropy with that weight as the soft
    label, returned as ``aux_loss``. At test time the router decides from the token alone, before any query comes.
    So it learns which tokens attention would look back to, with no labels beyond the task's own (KV-cache methods
    that learn to keep what attention reads, e.g. Locret, train the same way). Where a
    :class:`~tsham.ham.routers.learned.LearnedRouter` gets a gradient only on the tokens it already keeps, this one
    gets it on every token.

    It reads the key and value a token would be cached with, not the layer input: the attention it learns from
    matches keys, and a key's short convolution reaches back over tokens the input does not hold (probe C: the read
    lands on an event's last value token, whose key still holds the event's key shape three tokens back). They are
    detached, so the fit does not move the keys it learns from.

    Args:
        hidden: width of the MLP.
        queries: how many of the stream's last tokens' attention to fit (probe C at patch 4: the query key's two
            context tokens and the forecast's two).
        **kwargs: threshold / target / controller_lr / cap / sinks of :class:`Router`.
    """

    def __init__(self, d_model, layer_idx, num_heads, hidden: int = 16, queries: int = 4, **kwargs):
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        if queries < 1:
            raise ValueError(f"DistilledRouter: queries must be a number of tokens >= 1; got {queries}")
        self.attention_queries = queries  # the layer computes RouterInput.attention for them while training
        self.hidden = hidden
        self.mlp: nn.Module | None = None  # sized by bind_layer, once the layer's head widths are known

    def bind_layer(self, key_dim: int, value_dim: int) -> None:
        self.mlp = nn.Sequential(nn.Linear(self.num_heads * (key_dim + value_dim), self.hidden), nn.GELU(),
                                 nn.Linear(self.hidden, 1))

    def score(self, inp: RouterInput) -> torch.Tensor:
        if self.mlp is None:
            raise ValueError("DistilledRouter: call bind_layer(key_dim, value_dim) first (HamLayer does)")
        if inp.key is None:
            raise ValueError("DistilledRouter scores a token by its scratchpad key; RouterInput.key is None")
        features = torch.cat([inp.key.flatten(2).float(), inp.value.flatten(2).float()], -1)  # (B, T, H(K + V))
        return torch.sigmoid(self.mlp(features).float())[..., 0]  # (B, T)

    def extras(self, inp: RouterInput, score: torch.Tensor) -> dict:
        if inp.attention is None:  # not training: nothing to fit
            return {}
        eps = 1e-6  # keeps the log finite where a sigmoid saturates
        loss = F.binary_cross_entropy(score.clamp(eps, 1 - eps), inp.attention.to(score.dtype), reduction="none")
        if inp.valid is None:
            return {"aux_loss": loss.mean()}
        keep = inp.valid.float()
        return {"aux_loss": (loss * keep).sum() / keep.sum().clamp_min(1.0)}
