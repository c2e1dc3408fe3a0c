"""State-utility probes (PROBES.md): which memory holds the needle's information, independent of the head.

At the query (the last context token) every HAM layer reads its two memories: the recurrent state's output
``o_gdn`` and the scratchpad's ``o_kv`` (``[H, V]`` each per layer). A ridge readout, fitted on half of the
examples and scored on the other half, predicts the probe's target (the recalled quantity: the bound value,
the delayed effect, the replayed motif) from (a) the recurrent-state reads, (b) the scratchpad reads, (c) both.
The held-out R^2 of each says which memory holds the information. (The reads are the state as the model
queries it, not the whole ``[H, K, V]`` state matrix.)

The same readouts fitted on the needle-ablated twin's reads (``*_twin``) measure what the reads predict without the
needle: a target the context predicts anyway (probe D's random walk: its current level tells its past level) scores
high on both, so the needle's own share of a memory is the difference ``R^2 - R^2_twin``.
"""

from __future__ import annotations

import numpy as np
import torch
from tsham.probes.diagnostics import recorded_reads
from tsham.probes.generators import PROBES

from tsham.model import TshamModel


@torch.no_grad()
def state_utility(model: TshamModel, probe: str, level: str = "easy", n: int = 256, seed: int = 0,
                  alphas: tuple[float, ...] = tuple(np.logspace(-2, 4, 13)), device: str = "cpu") -> dict[str, float]:
    """Held-out R^2 of ridge readouts of the probe target ``[n, H * Ct]`` from the memories' reads at the query
    token, on the examples and on their needle-ablated twins; each readout's regularisation is chosen from
    ``alphas`` by leave-one-out on the fitting half (a fixed one overfitted the hundreds of read features of a few
    hundred sequences: R^2 of -0.3 from reads that hold nothing).

    Returns:
        ``{"recurrent", "scratchpad", "both"}`` R^2 from the examples' reads (1: the reads determine the target;
        <= 0: nothing) and the same names with ``_twin`` from the twins' reads (the target the context gives away
        without the needle).
    """
    if n < 8:
        raise ValueError(f"state_utility: need at least 8 examples for a held-out split; got {n}")
    batch = PROBES[probe](n, level, seed=seed)
    model = model.to(device).eval()
    y = batch.target.reshape(n, -1)
    scores = {}
    for view, suffix in (("example", ""), ("twin", "_twin")):
        gdn, kv = query_reads(model, batch, view, device)
        for name, features in (("recurrent", gdn), ("scratchpad", kv), ("both", np.concatenate([gdn, kv], 1))):
            scores[name + suffix] = held_out_r2(features, y, alphas)
    return scores


def query_reads(model: TshamModel, batch, view: str, device) -> tuple[np.ndarray, np.ndarray]:
    """What the query token (the last context token) reads from the recurrent state and from the scratchpad, every
    layer's heads flattened: two ``[N, layers * H * V]`` arrays, for one view of the batch ("example" or "twin"),
    in forwards of as many sequences as fit (:func:`tsham.probes.runner.scoring_rows`)."""
    from tsham.probes.runner import probe_forward, scoring_rows

    n = len(batch.context)
    step = scoring_rows(model, batch.context.shape[1], most=n)
    gdn, kv = [], []
    for start in range(0, n, step):
        with recorded_reads(model) as reads:
            out = probe_forward(model, batch.rows(start, start + step), device, view=view)
        q = out.num_context_patches - 1
        gdn.append(torch.cat([r.o_gdn[:, q].flatten(1) for r in reads], 1).cpu().numpy())
        kv.append(torch.cat([r.o_kv[:, q].flatten(1) for r in reads], 1).cpu().numpy())
    return np.concatenate(gdn), np.concatenate(kv)


def held_out_r2(features: np.ndarray, y: np.ndarray, alphas) -> float:
    """R^2 on the second half of a ridge readout ``features [N, F] -> y [N, T]`` fitted on the first half (features
    standardised on the fitting half; the penalty chosen by leave-one-out)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    half = len(y) // 2
    mean, std = features[:half].mean(0), features[:half].std(0) + 1e-8
    z = (features - mean) / std
    fit = RidgeCV(alphas=alphas).fit(z[:half], y[:half])
    return float(r2_score(y[half:], fit.predict(z[half:])))
