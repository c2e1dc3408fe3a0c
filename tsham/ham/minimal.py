"""The whole HAM layer in plain einsum, one numbered step at a time (after mamba's ``ssd_minimal.py``).

This file is documentation and an oracle: it shares no code with :class:`tsham.ham.HamLayer` beyond reading
its parameters, and the tests check that the layer equals it. Slow (a loop over tokens); float32.

Shapes: B batch, T tokens, D model width, H heads, K key width, V value width, W conv width.
"""

from __future__ import annotations

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def ham_minimal(
    layer,
    x: torch.Tensor,
    tau: float | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One HAM layer with surprise routing (min over heads, ``score >= tau``) or a given mask.

    Args:
        layer: a :class:`tsham.ham.HamLayer` whose parameters are used.
        x: ``[B, T, D]``.
        tau: surprise threshold (used when ``mask`` is None).
        mask: routed tokens ``[B, T]`` bool, overriding the surprise router.

    Returns:
        y ``[B, T, D]``, routing mask ``[B, T]``, prediction errors ``[B, T, H, V]``.
    """
    c = layer.config
    H, K, V, W, eps = c.num_heads, c.head_dim, c.head_dim_v, c.conv_size, c.norm_eps
    x = x.float()
    B, T, D = x.shape
    P = {name: p.detach().float() for name, p in layer.named_parameters()}

    # 1. Project x to the pre-conv q, k, v channels: u [B, T, C] with C = H(2K + V).
    u = torch.einsum("btd,cd->btc", x, P["qkv_proj.weight"])

    # 2. Short causal depthwise conv of width W, then SiLU: each channel mixes its last W inputs.
    u_pad = torch.cat([u.new_zeros(B, W - 1, u.shape[-1]), u], 1)
    windows = torch.stack([u_pad[:, i : i + T] for i in range(W)], -1)  # (B, T, C, W)
    u = torch.nn.functional.silu(torch.einsum("btcw,cw->btc", windows, P["conv_weight"]))

    # 3. Split into heads and L2-normalise q, k.
    q, k, v = u.split([H * K, H * K, H * V], -1)
    q, k, v = q.reshape(B, T, H, K), k.reshape(B, T, H, K), v.reshape(B, T, H, V)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    # 4. Decay a_t = exp(g_t) with g_t = -exp(A_log) softplus(a + dt_bias), write strength beta_t = sigmoid(b).
    ab = torch.einsum("btd,jd->btj", x, P["ab_proj.weight"])
    g = -P["A_log"].exp() * torch.nn.functional.softplus(ab[..., :H] + P["dt_bias"])  # (B, T, H)
    beta = torch.sigmoid(ab[..., H:])  # (B, T, H)

    # 5. Gated delta rule, token by token: predict v_t from the decayed state, write the error.
    S = x.new_zeros(B, H, K, V)
    o_gdn, err = torch.zeros(B, T, H, V), torch.zeros(B, T, H, V)
    for t in range(T):
        S = g[:, t].exp()[..., None, None] * S  # a_t S_{t-1}
        err[:, t] = v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t])  # e_t = v_t - (a_t S_{t-1})^T k_t
        S = S + torch.einsum("bh,bhk,bhv->bhkv", beta[:, t], k[:, t], err[:, t])  # S_t = a_t S_{t-1} + b_t k_t e_t^T
        o_gdn[:, t] = K**-0.5 * torch.einsum("bhkv,bhk->bhv", S, q[:, t])  # o_t = scale S_t^T q_t

    # 6. Route: surprise = ||e_t||^2 / ||v_t||^2, minimum over heads, kept when >= tau.
    if mask is None:
        surprise = err.pow(2).sum(-1) / (v.pow(2).sum(-1) + 1e-6)  # (B, T, H)
        mask = surprise.amin(-1) >= tau  # (B, T)

    # 7. Scratchpad: query t attends to the routed tokens i <= t with a learned per-head temperature; with rotary
    #    positions, pair j of q and k (entries j and j + K/2, as one complex number) turns by t * base^(-2j/K).
    q_kv, k_kv = q, k
    if c.kv_own_qk:  # the scratchpad's own projections of x, L2-normalised (no convolution)
        q_kv, k_kv = torch.einsum("btd,cd->btc", x, P["kv_qk_proj.weight"]).reshape(B, T, 2, H, K).unbind(2)
        q_kv = q_kv / q_kv.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        k_kv = k_kv / k_kv.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if c.kv_rope_base:
        angles = torch.arange(T)[:, None] * c.kv_rope_base ** (-2 * torch.arange(K // 2) / K)  # (T, K/2)
        turn = torch.polar(torch.ones(T, K // 2), angles)
        as_complex = lambda z: torch.complex(z[..., : K // 2], z[..., K // 2 :]) * turn[None, :, None]  # noqa: E731
        q_kv, k_kv = (torch.cat([z.real, z.imag], -1) for z in (as_complex(q_kv), as_complex(k_kv)))
    logits = torch.einsum("bthk,bshk,h->bhts", q_kv, k_kv, P["kv_log_scale"].exp())
    visible = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :]  # (B, 1, T, S)
    logits = logits.masked_fill(~visible, float("-inf"))
    weights = torch.softmax(logits, -1).nan_to_num(0.0)  # a query with no routed token reads zero
    o_kv = torch.einsum("bhts,bshv->bthv", weights, v)

    # 8. Merge: independent sigmoid gates per head on the two normalised reads.
    gates = torch.sigmoid(torch.einsum("btd,jd->btj", x, P["merge_proj.weight"]) + P["merge_proj.bias"])
    o = gates[..., :H, None] * rms_norm(o_gdn, P["gdn_norm"], eps) + gates[..., H:, None] * rms_norm(
        o_kv, P["kv_norm"], eps
    )

    # 9. Output gate (SiLU of a projection of x) and output projection.
    o = o.reshape(B, T, H * V) * torch.nn.functional.silu(torch.einsum("btd,jd->btj", x, P["gate_proj.weight"]))
    y = torch.einsum("btj,dj->btd", o, P["o_proj.weight"])
    return y, mask, err
