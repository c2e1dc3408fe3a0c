"""CUDA path of the gated delta rule through fla-core's chunk kernels, with the prediction error fused in.

fla's forward already computes ``v_new = beta_t e_t`` per token (the WY write vector, kept to compute the
output); its public function drops it. This Function runs the same kernels as fla's
``ChunkGatedDeltaRuleFunction`` (cumsum -> intra-chunk WY -> state recurrence -> output), returns e from
``v_new`` at no extra kernel cost, and hands the backward to fla's own ``chunk_gated_delta_rule_bwd``
(which routes to tilelang on Hopper). fla is imported lazily: importing it costs seconds.
"""

from __future__ import annotations

import functools
import importlib.util
import re

import torch

from tsham.ops.checks import check_qkv

CHUNK = 64  # fla's chunk size for the gated delta rule


class FlaGatedDeltaFunction(torch.autograd.Function):
    """(q, k, v, g, beta, scale, initial_state, output_final_state) -> (o, final_state, e); e has no gradient."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state):
        from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
        from fla.ops.common.chunk_o import chunk_fwd_o
        from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
        from fla.ops.utils import chunk_local_cumsum
        from fla.ops.utils.constant import RCP_LN2

        # fla's kernels read raw memory; its public entry makes inputs contiguous, and so must we.
        q, k, v, g, beta = (t.contiguous() for t in (q, k, v, g, beta))
        g_cum = chunk_local_cumsum(g, chunk_size=CHUNK, scale=RCP_LN2)  # log2 units, as fla's kernels expect
        w, u, A = chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=g_cum, beta=beta, chunk_size=CHUNK)
        h, v_new, final_state = chunk_gated_delta_rule_fwd_h(
            k=k, w=w, u=u, g=g_cum, initial_state=initial_state, output_final_state=output_final_state,
            chunk_size=CHUNK,
        )
        o = chunk_fwd_o(q=q, k=k, v=v_new, h=h, g=g_cum, scale=scale, chunk_size=CHUNK)
        # e_t = v_new_t / beta_t; beta is a sigmoid (never 0 in practice), clamped to keep e finite.
        e = v_new.float() / beta.float().clamp_min(1e-6)[..., None]
        ctx.save_for_backward(q, k, v, g_cum, beta, A, initial_state)
        ctx.scale = scale
        ctx.mark_non_differentiable(e)
        return o.to(q.dtype), final_state, e

    @staticmethod
    def backward(ctx, do, dht, de):
        from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule_bwd

        q, k, v, g_cum, beta, A, initial_state = ctx.saved_tensors
        dq, dk, dv, db, dg, dh0, _, _ = chunk_gated_delta_rule_bwd(
            q=q, k=k, v=v, g=g_cum, beta=beta, A=A, scale=ctx.scale, initial_state=initial_state,
            do=do.contiguous(), dht=None if dht is None else dht.contiguous(), chunk_size=CHUNK,
        )
        return dq.to(q), dk.to(k), dv.to(v), dg.to(g_cum), db.to(beta), None, dh0, None


def fla_gated_delta(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Shapes and returns as :func:`tsham.ops.chunk_gated_delta`; o in q's dtype, e float32 without gradient."""
    B, T, H, K, V = check_qkv(q, k, v, "gated_delta")
    scale = K**-0.5 if scale is None else scale
    o, final_state, e = FlaGatedDeltaFunction.apply(q, k, v, g, beta, scale, initial_state, output_final_state)
    return o, final_state, e


@functools.cache
def fla_backward_blocked(device_index: int) -> str | None:
    """Why fla-core's gated backward cannot run on CUDA device ``device_index``, or None when it can. On Hopper
    (compute capability 9.x) with Triton >= 3.4.0 and < 3.7.1, fla's Triton kernel for it gives wrong gradients and
    fla refuses to run it unless tilelang is installed to take it over (fla's issue #640); tsham pins Triton 3.6.0,
    so an H100 / H200 without tilelang lands here. Cached: the answer is fixed for a process."""
    import triton

    major, _ = torch.cuda.get_device_capability(device_index)
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", triton.__version__)
    version = tuple(int(x or 0) for x in found.groups()) if found else (0, 0, 0)
    if major != 9 or not (3, 4, 0) <= version < (3, 7, 1) or importlib.util.find_spec("tilelang") is not None:
        return None
    return (f"fla-core's gated backward refuses Triton {triton.__version__} on Hopper without tilelang (fla issue "
            "#640): pip install tilelang for the fused backward")
