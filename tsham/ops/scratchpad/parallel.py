"""Launchers, autograd Function and public functions of the Triton scratchpad kernels."""

from __future__ import annotations

import functools
import os

import torch
import triton

from tsham.ops.checks import check_qkv
from tsham.ops.scratchpad.kernels import (
    scratchpad_bwd_dkdv_kernel,
    scratchpad_bwd_dq_kernel,
    scratchpad_decode_combine_kernel,
    scratchpad_decode_kernel,
    scratchpad_fwd_kernel,
)
from tsham.ops.scratchpad.naive import check_counts, check_routing

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Query block BT, slot block BS, warps, pipeline stages; tuned per head size on the GPU.
CONFIGS = [triton.Config({"BT": bt, "BS": bs}, num_warps=w, num_stages=st) for bt, bs, w, st in
           [(64, 32, 4, 3), (64, 64, 4, 2), (128, 64, 8, 2), (128, 64, 8, 3)]]


def tuned(kernel):
    """Autotuned on the GPU; the CPU interpreter cannot benchmark, so it runs one fixed config (see _fixed)."""
    return kernel if INTERPRET else triton.autotune(CONFIGS, key=["K", "V", "HAS_WINDOW"])(kernel)


fwd_kernel, dq_kernel, dkdv_kernel = map(
    tuned, (scratchpad_fwd_kernel, scratchpad_bwd_dq_kernel, scratchpad_bwd_dkdv_kernel)
)


def _sizes(K: int, V: int) -> dict:
    """Padded head sizes, plus the fixed block config when the kernels are not autotuned."""
    BK, BV = (max(16, triton.next_power_of_2(d)) for d in (K, V))
    fixed = {"BT": 64, "BS": 64 if max(BK, BV) <= 64 else 32} if INTERPRET else {}
    return {"BK": BK, "BV": BV, **fixed}


class ScratchpadAttnFunction(torch.autograd.Function):
    """Routed causal attention with a FlashAttention-2 style backward over the compact cache."""

    @staticmethod
    def forward(ctx, q, k, v, indices, counts, scale, window, sinks):
        B, T, H, K, V = check_qkv(q, k, v, "parallel_scratchpad_attn")
        q, k, v = (t.contiguous() for t in (q, k, v))
        indices, counts = indices.to(torch.int32).contiguous(), counts.to(torch.int32).contiguous()
        S = indices.shape[1]
        o = torch.empty(B, T, H, V, dtype=q.dtype, device=q.device)
        lse = torch.empty(B, H, T, dtype=torch.float32, device=q.device)
        seen = torch.empty(B, H, T, dtype=torch.int32, device=q.device)  # slots visible per query, for backward
        fwd_kernel[lambda meta: (triton.cdiv(T, meta["BT"]), B * H)](
            q, k, v, indices, counts, seen, o, lse, scale, T, S, S.bit_length(), window or 0, sinks,
            H=H, K=K, V=V, HAS_WINDOW=window is not None, **_sizes(K, V),
        )
        ctx.save_for_backward(q, k, v, indices, counts, seen, o, lse)
        ctx.scale, ctx.window, ctx.sinks = scale, window, sinks
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, indices, counts, seen, o, lse = ctx.saved_tensors
        B, T, H, K = q.shape
        V, S = v.shape[-1], indices.shape[1]
        do = do.contiguous()
        delta = (o.float() * do.float()).sum(-1).permute(0, 2, 1).contiguous()  # (B, H, T)
        dq = torch.empty_like(q)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)  # unrouted positions get no gradient
        common = dict(H=H, K=K, V=V, HAS_WINDOW=ctx.window is not None, **_sizes(K, V))
        dq_kernel[lambda meta: (triton.cdiv(T, meta["BT"]), B * H)](
            q, k, v, indices, seen, lse, delta, do, dq, ctx.scale, T, S, ctx.window or 0, ctx.sinks, **common
        )
        if S == 0:  # an empty cache: no key or value was read
            return dq, dk, dv, None, None, None, None, None
        dkdv_kernel[lambda meta: (triton.cdiv(S, meta["BS"]), B * H)](
            q, k, v, indices, counts, seen, lse, delta, do, dk, dv, ctx.scale, T, S, ctx.window or 0, ctx.sinks,
            **common,
        )
        return dq, dk, dv, None, None, None, None, None


def parallel_scratchpad_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    counts: torch.Tensor,
    scale: float | None = None,
    window: int | None = None,
    sinks: int = 0,
) -> torch.Tensor:
    r"""Routed causal attention in Triton; same signature and result as :func:`naive_scratchpad_attn`.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]`` (fp32, fp16 or bf16; K, V up to 128, any T).
        indices: ``[B, S, H]`` int routed positions, ascending for slots ``< counts``; S may be T (as
            :func:`compact_routed` gives with ``slots=T``), so no host sync is needed: the kernels read counts.
        counts: ``[B, H]`` int. scale: default ``K ** -0.5``. window, sinks: as in the naive twin.

    Returns:
        o ``[B, T, H, V]`` in q's dtype.
    """
    B, T, H, K, _ = check_qkv(q, k, v, "parallel_scratchpad_attn")
    check_routing(indices, counts, B, H, "parallel_scratchpad_attn")
    return ScratchpadAttnFunction.apply(q, k, v, indices, counts, K**-0.5 if scale is None else scale, window, sinks)


@functools.cache
def _target_programs(device_index: int) -> int:
    """About two programs per SM keep the GPU busy in decode (a fixed 16 under the CPU interpreter)."""
    if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
        return 16
    return 2 * torch.cuda.get_device_properties(device_index).multi_processor_count


def parallel_scratchpad_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    counts: torch.Tensor,
    scale: float | None = None,
    window: int | None = None,
    sinks: int = 0,
) -> torch.Tensor:
    """One query per stream in Triton (flash-decoding splits); same signature as :func:`scratchpad_decode`.

    Args:
        q: ``[B, H, K]``; k_cache ``[B, S, H, K]``; v_cache ``[B, S, H, V]``; counts ``[B, H]`` live slots.

    Returns:
        o ``[B, H, V]`` in q's dtype.
    """
    B, S, H, K = k_cache.shape
    V = v_cache.shape[-1]
    if q.shape != (B, H, K) or v_cache.shape[:3] != (B, S, H):
        raise ValueError(f"parallel_scratchpad_decode: q must be [B, H, K] and k/v caches [B, S, H, K/V]; got q "
                         f"{tuple(q.shape)}, k_cache {tuple(k_cache.shape)}, v_cache {tuple(v_cache.shape)}")
    check_counts(counts, B, H, "parallel_scratchpad_decode")
    BS, BK, BV = 64, max(16, triton.next_power_of_2(K)), max(16, triton.next_power_of_2(V))
    want = triton.cdiv(_target_programs(q.device.index or 0), B * H)
    split = triton.cdiv(triton.cdiv(max(S, 1), max(1, min(want, triton.cdiv(S, BS)))), BS) * BS
    n_split = triton.cdiv(max(S, 1), split)
    o_part = torch.empty(B * H, n_split, V, dtype=torch.float32, device=q.device)
    m_part = torch.empty(B * H, n_split, dtype=torch.float32, device=q.device)
    l_part = torch.empty_like(m_part)
    scratchpad_decode_kernel[(n_split, B * H)](
        q.contiguous(), k_cache.contiguous(), v_cache.contiguous(), counts.to(torch.int32).contiguous(),
        o_part, m_part, l_part, K**-0.5 if scale is None else scale, S, split, window or 0, sinks,
        H=H, K=K, V=V, HAS_WINDOW=window is not None, BS=BS, BK=BK, BV=BV, num_warps=4,
    )
    o = torch.empty(B, H, V, dtype=q.dtype, device=q.device)
    scratchpad_decode_combine_kernel[(B * H,)](
        o_part, m_part, l_part, o, n_split, V=V, BN=max(2, triton.next_power_of_2(n_split)), BV=BV
    )
    return o
