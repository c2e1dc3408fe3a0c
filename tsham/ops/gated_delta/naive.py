"""Gated delta rule, one token at a time (the reference every other path is checked against)."""

from __future__ import annotations

import torch

from tsham.ops.checks import check_qkv, check_shape


def naive_gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    r"""Gated DeltaNet recurrence with its per-token prediction error, in float32.

    For every token: ``a_t = exp(g_t)``, ``e_t = v_t - (a_t S_{t-1})^T k_t``,
    ``S_t = a_t S_{t-1} + beta_t k_t e_t^T`` and ``o_t = scale * S_t^T q_t``.

    Args:
        q: queries ``[B, T, H, K]`` (L2-normalised by the caller).
        k: keys ``[B, T, H, K]`` (L2-normalised by the caller).
        v: values ``[B, T, H, V]``.
        g: log decay ``[B, T, H]`` (<= 0).
        beta: write strength ``[B, T, H]`` in (0, 1).
        scale: query scale, default ``K ** -0.5``.
        initial_state: ``[B, H, K, V]`` or None (zeros).
        output_final_state: return the final state.

    Returns:
        o ``[B, T, H, V]``, final_state ``[B, H, K, V]`` (or None), error e ``[B, T, H, V]``.
        All float32.
    """
    B, T, H, K, V = check_qkv(q, k, v, "naive_gated_delta")
    check_shape(g, (B, T, H), "g", "naive_gated_delta")
    check_shape(beta, (B, T, H), "beta", "naive_gated_delta")
    check_shape(initial_state, (B, H, K, V), "initial_state", "naive_gated_delta")
    scale = K**-0.5 if scale is None else scale
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    o, e = [], []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]  # a_t S_{t-1}
        e_t = v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t])
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], beta[:, t, :, None] * e_t)
        o.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
        e.append(e_t)
    return torch.stack(o, 1), (S if output_final_state else None), torch.stack(e, 1)
