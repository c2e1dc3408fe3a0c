"""CUDA path of the gated delta rule through fla-core (imported lazily: it costs seconds to import)."""

from __future__ import annotations

import torch

from tsham.ops.checks import check_qkv


def fla_gated_delta(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """fla-core's chunk_gated_delta_rule for o and the state, plus the prediction error e without gradient.

    Shapes as in :func:`tsham.ops.chunk_gated_delta`. fla's forward computes ``v_new = beta_t e_t`` per
    token (its WY write vector); e is that divided by beta (beta is a sigmoid, so never 0 in practice;
    it is clamped at 1e-6 to keep e finite). Costs one extra forward of the intra-chunk and state kernels
    (no output kernel); the kernels issue fuses it.
    """
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
    from fla.ops.utils import chunk_local_cumsum
    from fla.ops.utils.constant import RCP_LN2

    check_qkv(q, k, v, "gated_delta")
    o, final_state = chunk_gated_delta_rule(
        q, k, v, g, beta, scale=scale, initial_state=initial_state, output_final_state=output_final_state
    )
    with torch.no_grad():
        # fla's internal kernels read raw memory (its public entry point makes inputs contiguous; these do not).
        k, v, g, beta = (t.contiguous() for t in (k, v, g, beta))
        # fla keeps cumulative decays in log2 units (scale=RCP_LN2), as its own forward does.
        g_cum = chunk_local_cumsum(g, chunk_size=64, scale=RCP_LN2)
        w, u, _ = chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=g_cum, beta=beta, chunk_size=64)
        h0 = None if initial_state is None else initial_state.float()
        _, v_new, _ = chunk_gated_delta_rule_fwd_h(k=k, w=w, u=u, g=g_cum, initial_state=h0, output_final_state=False)
        e = v_new.float() / beta.float().clamp_min(1e-6)[..., None]
    return o.float(), (None if final_state is None else final_state.float()), e
