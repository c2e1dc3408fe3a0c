"""Chunked gated delta rule in plain torch (parallel inside chunks) and the CUDA dispatch to fla-core."""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from einops import rearrange

from tsham.ops.backend import use_fused
from tsham.ops.checks import check_qkv, check_shape


def chunk_gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    r"""Gated DeltaNet in chunks: a WY solve inside each chunk, a loop over chunks only for the state.

    Same maths and signature as :func:`naive_gated_delta`. Inside a chunk with cumulative log decay
    ``G_i`` and entering state ``S0`` the write vectors ``u_i = beta_i e_i`` solve the unit lower
    triangular system ``(I + diag(beta) A') U = diag(beta) (V - exp(G) K S0)`` with
    ``A'_ij = exp(G_i - G_j) k_i.k_j`` (j < i); then ``e = V - exp(G) K S0 - A' U`` exactly (no
    division by beta), ``o = scale (exp(G) Q S0 + (Q K^T * D) U)`` and the state advances once per chunk.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``; g, beta: ``[B, T, H]``.
        scale: default ``K ** -0.5``. initial_state: ``[B, H, K, V]`` or None.
        output_final_state: return the final state. chunk_size: tokens per chunk (any T is padded).

    Returns:
        o ``[B, T, H, V]``, final_state ``[B, H, K, V]`` or None, error e ``[B, T, H, V]``; float32.

    Examples::
        >>> B, T, H, K, V = 2, 100, 4, 32, 32
        >>> q, k = (F.normalize(torch.randn(B, T, H, K), dim=-1) for _ in range(2))
        >>> v = torch.randn(B, T, H, V)
        >>> g, beta = -torch.rand(B, T, H), torch.rand(B, T, H)
        >>> o, state, e = chunk_gated_delta(q, k, v, g, beta, output_final_state=True)
    """
    B, T, H, K, V = check_qkv(q, k, v, "chunk_gated_delta")
    check_shape(g, (B, T, H), "g", "chunk_gated_delta")
    check_shape(beta, (B, T, H), "beta", "chunk_gated_delta")
    check_shape(initial_state, (B, H, K, V), "initial_state", "chunk_gated_delta")
    scale = K**-0.5 if scale is None else scale
    C = chunk_size
    pad = (-T) % C
    # Padding tokens have k = 0 and beta = 0: they write nothing and leave the state as it is.
    q, k, v = (rearrange(F.pad(x.float(), (0, 0, 0, 0, 0, pad)), "b (n c) h d -> b h n c d", c=C) for x in (q, k, v))
    g, beta = (rearrange(F.pad(x.float(), (0, 0, 0, pad)), "b (n c) h -> b h n c", c=C) for x in (g, beta))

    G = g.cumsum(-1)  # (B, H, N, C) cumulative log decay inside each chunk
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    decay = (G[..., :, None] - G[..., None, :]).masked_fill(~causal, float("-inf")).exp()  # D_ij, j <= i
    A_strict = (k @ k.transpose(-1, -2)) * decay.masked_fill(causal.diag().diag_embed(), 0)  # A'_ij, j < i
    lower = beta[..., None] * A_strict  # diag(beta) A'; the unit diagonal is implied by unitriangular=True
    u_v = torch.linalg.solve_triangular(lower, beta[..., None] * v, upper=False, unitriangular=True)
    w_k = torch.linalg.solve_triangular(lower, (beta * G.exp())[..., None] * k, upper=False, unitriangular=True)
    qk = (q @ k.transpose(-1, -2)) * decay  # (B, H, N, C, C)
    k_to_end = k * (G[..., -1:] - G).exp()[..., None]  # k_j exp(G_C - G_j), for the state update

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    o, e = [], []
    for n in range(q.shape[2]):
        u = u_v[:, :, n] - w_k[:, :, n] @ S  # (B, H, C, V) write vectors beta_i e_i
        predicted = G[:, :, n, :, None].exp() * (k[:, :, n] @ S)  # (a_i S_{i-1} at chunk entry)^T k_i
        e.append(v[:, :, n] - predicted - A_strict[:, :, n] @ u)
        o.append(scale * (G[:, :, n, :, None].exp() * (q[:, :, n] @ S) + qk[:, :, n] @ u))
        S = G[:, :, n, -1, None, None].exp() * S + k_to_end[:, :, n].transpose(-1, -2) @ u
    o, e = (rearrange(torch.stack(x, 2), "b h n c d -> b (n c) h d")[:, :T] for x in (o, e))
    return o, (S if output_final_state else None), e


def gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The gated delta rule on the best path for the device: fla-core's chunk kernel on CUDA, else torch chunks
    (see :mod:`tsham.ops.backend`). A forward that will be trained through on a GPU where fla's backward refuses
    to run (:func:`~tsham.ops.gated_delta.fla_path.fla_backward_blocked`) takes the torch chunks, with a warning.

    Same signature and returns as :func:`chunk_gated_delta` (o ``[B, T, H, V]``, final_state
    ``[B, H, K, V]`` or None, e ``[B, T, H, V]``). On CUDA, o and the state carry gradients through fla's
    kernels; e comes out of the same forward (fla's ``v_new = beta e``) without gradient: routers only read it.
    """
    if use_fused(q):
        from tsham.ops.gated_delta.fla_path import fla_backward_blocked, fla_gated_delta

        inputs = (q, k, v, g, beta, initial_state)
        training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
        device = torch.cuda.current_device() if q.device.index is None else q.device.index
        reason = fla_backward_blocked(device) if training else None
        if reason is None:
            return fla_gated_delta(q, k, v, g, beta, scale, initial_state, output_final_state)
        _warn_torch_fallback(reason)  # the torch chunks train anywhere (slower); a crash in backward would not
    return chunk_gated_delta(q, k, v, g, beta, scale, initial_state, output_final_state)


@functools.cache  # once per process and reason: every layer's every step would repeat it
def _warn_torch_fallback(reason: str) -> None:
    warnings.warn(f"gated_delta: training on the torch chunk path: {reason}", stacklevel=3)
