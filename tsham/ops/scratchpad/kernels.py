"""Triton kernels of routed causal attention over the compact cache (forward, backward, decode).

Layouts: q, k, v ``[B, T, H, D]``; indices ``[B, S, H]`` (routed positions, ascending per (b, h));
``seen`` ``[B, H, T]`` int32, the number of slots routed at or before each query (so query t sees slots
``j < seen[t]``, or with a window only ``j < SINKS`` and ``seen[t] - WINDOW <= j < seen[t]``);
lse and delta ``[B, H, T]`` float32. Keys and values are gathered from the full ``[B, T, H, D]`` tensors
through the indices, so nothing is compacted in memory. Queries come in blocks of BT, slots in blocks of BS;
a query block only visits the slot blocks its queries can see.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _scores(b_q, k, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
            H: tl.constexpr, K: tl.constexpr, WINDOW, SINKS, HAS_WINDOW: tl.constexpr,
            BS: tl.constexpr, BK: tl.constexpr):
    """Logits ``[BT, BS]`` of one query block against slots ``j0 .. j0+BS`` (-inf where not visible)."""
    o_s = j0 + tl.arange(0, BS)
    o_k = tl.arange(0, BK)
    m_s = o_s < c_hi
    b_pos = tl.load(idx + (i_b * S + o_s).to(tl.int64) * H + i_h, mask=m_s, other=0)
    p_k = k + ((i_b * T + b_pos).to(tl.int64) * H + i_h) * K
    b_k = tl.load(p_k[:, None] + o_k[None, :], mask=m_s[:, None] & (o_k[None, :] < K), other=0.)
    b_s = tl.dot(b_q, tl.trans(b_k)) * scale
    mask_vis = o_s[None, :] < b_seen[:, None]
    if HAS_WINDOW:
        mask_vis = mask_vis & ((o_s[None, :] < SINKS) | (o_s[None, :] >= b_seen[:, None] - WINDOW))
    return tl.where(mask_vis, b_s, float("-inf")), b_pos, m_s


@triton.jit
def _seen(idx, i_b, i_h, o_t, count, S, STEPS, H: tl.constexpr):
    """Per query t: live slots with position <= t, by a binary search over the ascending indices (STEPS rounds)."""
    lo = tl.zeros_like(o_t)
    hi = tl.zeros_like(o_t) + count
    for _ in range(STEPS):
        active = lo < hi
        mid = (lo + hi) // 2
        b_pos = tl.load(idx + (i_b * S + mid).to(tl.int64) * H + i_h, mask=active, other=0)
        right = active & (b_pos <= o_t)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & ~right, mid, hi)
    return lo


@triton.jit
def _slot_ranges(b_seen, m_t, WINDOW, SINKS, HAS_WINDOW: tl.constexpr, BS: tl.constexpr):
    """Slot blocks a query block visits: sinks [0, sink_end) and the main range [lo, c_hi)."""
    c_hi = tl.max(tl.where(m_t, b_seen, 0))
    lo = 0
    sink_end = 0
    if HAS_WINDOW:
        c_lo = tl.min(tl.where(m_t, b_seen, c_hi))
        lo = (tl.maximum(c_lo - WINDOW, 0) // BS) * BS
        sink_end = tl.minimum(SINKS, lo)
    return c_hi, lo, sink_end


@triton.jit
def _fwd_block(b_q, b_m, b_l, b_acc, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
               H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, WINDOW, SINKS, HAS_WINDOW: tl.constexpr,
               BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Online-softmax update of one query block with one slot block."""
    b_s, b_pos, m_s = _scores(b_q, k, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                              H, K, WINDOW, SINKS, HAS_WINDOW, BS, BK)
    o_v = tl.arange(0, BV)
    b_m_new = tl.maximum(b_m, tl.max(b_s, 1))
    b_m_use = tl.where(b_m_new == float("-inf"), 0., b_m_new)  # rows that see nothing yet
    b_p = tl.exp(b_s - b_m_use[:, None])
    b_alpha = tl.exp(b_m - b_m_use)
    p_v = v + ((i_b * T + b_pos).to(tl.int64) * H + i_h) * V
    b_v = tl.load(p_v[:, None] + o_v[None, :], mask=m_s[:, None] & (o_v[None, :] < V), other=0.)
    b_l = b_l * b_alpha + tl.sum(b_p, 1)
    b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v)
    return b_m_new, b_l, b_acc


@triton.jit
def _dq_block(b_q, b_do, b_lse, b_delta, b_dq, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
              H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, WINDOW, SINKS, HAS_WINDOW: tl.constexpr,
              BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """dq contribution of one slot block to one query block."""
    b_s, b_pos, m_s = _scores(b_q, k, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                              H, K, WINDOW, SINKS, HAS_WINDOW, BS, BK)
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    b_p = tl.exp(b_s - b_lse[:, None])
    p_kv = (i_b * T + b_pos).to(tl.int64) * H + i_h
    b_v = tl.load((v + p_kv * V)[:, None] + o_v[None, :], mask=m_s[:, None] & (o_v[None, :] < V), other=0.)
    b_k = tl.load((k + p_kv * K)[:, None] + o_k[None, :], mask=m_s[:, None] & (o_k[None, :] < K), other=0.)
    b_ds = b_p * (tl.dot(b_do, tl.trans(b_v)) - b_delta[:, None])
    return b_dq + tl.dot(b_ds.to(b_k.dtype), b_k)


@triton.jit
def scratchpad_fwd_kernel(q, k, v, idx, counts, seen, o, lse, scale, T, S, STEPS, WINDOW, SINKS,
                          H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, HAS_WINDOW: tl.constexpr,
                          BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    b_seen = _seen(idx, i_b, i_h, o_t, tl.load(counts + i_bh), S, STEPS, H)
    tl.store(seen + i_bh.to(tl.int64) * T + o_t, b_seen, mask=m_t)  # kept for the backward kernels
    p_q = q + ((i_b * T + o_t).to(tl.int64) * H + i_h) * K
    b_q = tl.load(p_q[:, None] + o_k[None, :], mask=m_t[:, None] & (o_k[None, :] < K), other=0.)

    b_m = tl.full([BT], float("-inf"), tl.float32)
    b_l = tl.zeros([BT], tl.float32)
    b_acc = tl.zeros([BT, BV], tl.float32)
    c_hi, lo, sink_end = _slot_ranges(b_seen, m_t, WINDOW, SINKS, HAS_WINDOW, BS)
    for j0 in range(0, sink_end, BS):  # sink slots (window mode only)
        b_m, b_l, b_acc = _fwd_block(b_q, b_m, b_l, b_acc, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                                     H, K, V, WINDOW, SINKS, HAS_WINDOW, BS, BK, BV)
    for j0 in range(lo, c_hi, BS):  # the window, or every visible slot
        b_m, b_l, b_acc = _fwd_block(b_q, b_m, b_l, b_acc, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                                     H, K, V, WINDOW, SINKS, HAS_WINDOW, BS, BK, BV)
    has = b_l > 0
    b_o = b_acc / tl.where(has, b_l, 1.)[:, None]
    p_o = o + ((i_b * T + o_t).to(tl.int64) * H + i_h) * V
    tl.store(p_o[:, None] + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_t[:, None] & (o_v[None, :] < V))
    tl.store(lse + i_bh.to(tl.int64) * T + o_t, tl.where(has, b_m + tl.log(tl.where(has, b_l, 1.)), 0.), mask=m_t)


@triton.jit
def scratchpad_bwd_dq_kernel(q, k, v, idx, seen, lse, delta, do, dq, scale, T, S, WINDOW, SINKS,
                             H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, HAS_WINDOW: tl.constexpr,
                             BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    b_seen = tl.load(seen + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0)
    b_lse = tl.load(lse + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0.)
    b_delta = tl.load(delta + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0.)
    p_q = q + ((i_b * T + o_t).to(tl.int64) * H + i_h) * K
    b_q = tl.load(p_q[:, None] + o_k[None, :], mask=m_t[:, None] & (o_k[None, :] < K), other=0.)
    p_do = do + ((i_b * T + o_t).to(tl.int64) * H + i_h) * V
    b_do = tl.load(p_do[:, None] + o_v[None, :], mask=m_t[:, None] & (o_v[None, :] < V), other=0.)

    b_dq = tl.zeros([BT, BK], tl.float32)
    c_hi, lo, sink_end = _slot_ranges(b_seen, m_t, WINDOW, SINKS, HAS_WINDOW, BS)
    for j0 in range(0, sink_end, BS):
        b_dq = _dq_block(b_q, b_do, b_lse, b_delta, b_dq, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                         H, K, V, WINDOW, SINKS, HAS_WINDOW, BS, BK, BV)
    for j0 in range(lo, c_hi, BS):
        b_dq = _dq_block(b_q, b_do, b_lse, b_delta, b_dq, k, v, idx, i_b, i_h, j0, c_hi, b_seen, T, S, scale,
                         H, K, V, WINDOW, SINKS, HAS_WINDOW, BS, BK, BV)
    p_dq = dq + ((i_b * T + o_t).to(tl.int64) * H + i_h) * K
    tl.store(p_dq[:, None] + o_k[None, :], (b_dq * scale).to(dq.dtype.element_ty),
             mask=m_t[:, None] & (o_k[None, :] < K))


@triton.jit
def scratchpad_bwd_dkdv_kernel(q, k, v, idx, counts, seen, lse, delta, do, dk, dv, scale, T, S, WINDOW, SINKS,
                               H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, HAS_WINDOW: tl.constexpr,
                               BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """One block of slots: gathers its keys/values, visits the query blocks that see them, scatters dk, dv."""
    i_s, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    count = tl.load(counts + i_bh)
    j0 = i_s * BS
    o_s = j0 + tl.arange(0, BS)
    m_s = o_s < count
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    b_pos = tl.load(idx + (i_b * S + o_s).to(tl.int64) * H + i_h, mask=m_s, other=0)
    p_kv = (i_b * T + b_pos).to(tl.int64) * H + i_h
    b_k = tl.load((k + p_kv * K)[:, None] + o_k[None, :], mask=m_s[:, None] & (o_k[None, :] < K), other=0.)
    b_v = tl.load((v + p_kv * V)[:, None] + o_v[None, :], mask=m_s[:, None] & (o_v[None, :] < V), other=0.)

    # Queries from the block's first position on; with a window, only until slot (last + WINDOW) is routed,
    # unless the block holds sink slots (they stay visible to the end).
    # A block past the live slots visits nothing (its loads and stores are masked off).
    t_lo = (tl.load(idx + (i_b * S + j0).to(tl.int64) * H + i_h, mask=j0 < count, other=T) // BT) * BT
    t_hi = tl.where(j0 < count, T, 0)
    if HAS_WINDOW:
        j_evict = tl.minimum(j0 + BS - 1, count - 1) + WINDOW
        if (j_evict < count) & (j0 >= SINKS):
            t_hi = tl.load(idx + (i_b * S + j_evict).to(tl.int64) * H + i_h)
    b_dk = tl.zeros([BS, BK], tl.float32)
    b_dv = tl.zeros([BS, BV], tl.float32)
    for t0 in range(t_lo, t_hi, BT):
        o_t = t0 + tl.arange(0, BT)
        m_t = o_t < T
        b_seen = tl.load(seen + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0)
        b_lse = tl.load(lse + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0.)
        b_delta = tl.load(delta + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0.)
        p_t = (i_b * T + o_t).to(tl.int64) * H + i_h
        b_q = tl.load((q + p_t * K)[:, None] + o_k[None, :], mask=m_t[:, None] & (o_k[None, :] < K), other=0.)
        b_do = tl.load((do + p_t * V)[:, None] + o_v[None, :], mask=m_t[:, None] & (o_v[None, :] < V), other=0.)
        b_sT = tl.dot(b_k, tl.trans(b_q)) * scale  # (BS, BT)
        mask_vis = m_s[:, None] & m_t[None, :] & (o_s[:, None] < b_seen[None, :])
        if HAS_WINDOW:
            mask_vis = mask_vis & ((o_s[:, None] < SINKS) | (o_s[:, None] >= b_seen[None, :] - WINDOW))
        b_pT = tl.where(mask_vis, tl.exp(b_sT - b_lse[None, :]), 0.)
        b_dv += tl.dot(b_pT.to(b_do.dtype), b_do)
        b_dpT = tl.dot(b_v, tl.trans(b_do))
        b_dsT = b_pT * (b_dpT - b_delta[None, :])
        b_dk += tl.dot(b_dsT.to(b_q.dtype), b_q)
    # Each routed position belongs to one slot of one program: a plain scatter, no atomics.
    tl.store((dk + p_kv * K)[:, None] + o_k[None, :], (b_dk * scale).to(dk.dtype.element_ty),
             mask=m_s[:, None] & (o_k[None, :] < K))
    tl.store((dv + p_kv * V)[:, None] + o_v[None, :], b_dv.to(dv.dtype.element_ty),
             mask=m_s[:, None] & (o_v[None, :] < V))


@triton.jit
def scratchpad_decode_kernel(q, k_cache, v_cache, counts, o_part, m_part, l_part, scale, S, SPLIT, WINDOW, SINKS,
                             H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, HAS_WINDOW: tl.constexpr,
                             BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """One query per (stream, head) against slots ``[i_split * SPLIT, (i_split + 1) * SPLIT)`` of its cache.

    Writes the split's unnormalised output, running max and sum (flash-decoding); the launcher combines splits.
    """
    i_split, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    n_split = tl.num_programs(0)
    count = tl.load(counts + i_bh)
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    b_q = tl.load(q + i_bh.to(tl.int64) * K + o_k, mask=o_k < K, other=0.).to(tl.float32)
    b_m = tl.full([1], float("-inf"), tl.float32)
    b_l = tl.zeros([1], tl.float32)
    b_acc = tl.zeros([BV], tl.float32)
    start = i_split * SPLIT
    stop = tl.minimum(start + SPLIT, count)
    for j0 in range(start, stop, BS):
        o_s = j0 + tl.arange(0, BS)
        mask_vis = o_s < stop
        if HAS_WINDOW:
            mask_vis = mask_vis & ((o_s < SINKS) | (o_s >= count - WINDOW))
        p_kv = (i_b * S + o_s).to(tl.int64) * H + i_h
        b_k = tl.load((k_cache + p_kv * K)[:, None] + o_k[None, :], mask=mask_vis[:, None] & (o_k[None, :] < K),
                      other=0.)
        b_s = tl.sum(b_k.to(tl.float32) * b_q[None, :], 1) * scale
        b_s = tl.where(mask_vis, b_s, float("-inf"))
        b_m_new = tl.maximum(b_m, tl.max(b_s, 0))
        b_m_use = tl.where(b_m_new == float("-inf"), 0., b_m_new)
        b_p = tl.exp(b_s - b_m_use)
        b_alpha = tl.exp(b_m - b_m_use)
        b_v = tl.load((v_cache + p_kv * V)[:, None] + o_v[None, :], mask=mask_vis[:, None] & (o_v[None, :] < V),
                      other=0.)
        b_l = b_l * b_alpha + tl.sum(b_p, 0)
        b_acc = b_acc * b_alpha + tl.sum(b_p[:, None] * b_v.to(tl.float32), 0)
        b_m = b_m_new
    out = i_bh.to(tl.int64) * n_split + i_split
    tl.store(o_part + out * V + o_v, b_acc, mask=o_v < V)
    tl.store(m_part + out + tl.arange(0, 1), b_m)
    tl.store(l_part + out + tl.arange(0, 1), b_l)


@triton.jit
def scratchpad_decode_combine_kernel(o_part, m_part, l_part, o, N_SPLIT, V: tl.constexpr,
                                     BN: tl.constexpr, BV: tl.constexpr):
    """Merges the splits of one (stream, head): rescale by exp(m_split - m_max); an empty cache reads zeros."""
    i_bh = tl.program_id(0)
    o_n, o_v = tl.arange(0, BN), tl.arange(0, BV)
    m_n = o_n < N_SPLIT
    p = i_bh.to(tl.int64) * N_SPLIT + o_n
    b_m = tl.load(m_part + p, mask=m_n, other=float("-inf"))
    b_l = tl.load(l_part + p, mask=m_n, other=0.)
    m_max = tl.max(b_m, 0)
    b_w = tl.where(b_m == float("-inf"), 0., tl.exp(b_m - tl.where(m_max == float("-inf"), 0., m_max)))
    b_acc = tl.load(o_part + p[:, None] * V + o_v[None, :], mask=m_n[:, None] & (o_v[None, :] < V), other=0.)
    denom = tl.sum(b_l * b_w, 0)
    b_o = tl.sum(b_acc * b_w[:, None], 0) / tl.where(denom > 0, denom, 1.)
    tl.store(o + i_bh.to(tl.int64) * V + o_v, b_o.to(o.dtype.element_ty), mask=o_v < V)
