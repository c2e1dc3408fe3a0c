"""State-utility probes (PROBES.md): which memory holds the needle's information, independent of the head.

At the query (the last context token) every HAM layer reads its two memories: the recurrent state's output
``o_gdn`` and the scratchpad's ``o_kv`` (``[H, V]`` each per layer). A ridge readout, fitted on half of the
examples and scored on the other half, predicts the probe's target (the recalled quantity: the bound value,
the delayed effect, the replayed motif) from (a) the recurrent-state reads, (b) the scratchpad reads, (c) both.
The held-out R^2 of each says which memory holds the information. (The reads are the state as the model
queries it, not the whole ``[H, K, V]`` state matrix.)
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
    """Held-out R^2 of ridge readouts of the probe target from the memories at the query token; each readout's
    regularisation is chosen from ``alphas`` by leave-one-out on the fitting half (a fixed one overfitted the
    hundreds of read features of a few hundred sequences: R^2 of -0.3 from reads that hold nothing).

    Returns:
        ``{"recurrent": r2, "scratchpad": r2, "both": r2}`` (1: the reads determine the target; <= 0: nothing).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from tsham.probes.runner import probe_forward

    if n < 8:
        raise ValueError(f"state_utility: need at least 8 examples for a held-out split; got {n}")
    batch = PROBES[probe](n, level, seed=seed)
    model = model.to(device).eval()
    with recorded_reads(model) as reads:
        out = probe_forward(model, batch, device)
    q = out.num_context_patches - 1  # the query: the last context token
    gdn = torch.cat([r.o_gdn[:, q].flatten(1) for r in reads], 1).cpu().numpy()
    kv = torch.cat([r.o_kv[:, q].flatten(1) for r in reads], 1).cpu().numpy()
    y = batch.target.reshape(n, -1)
    half = n // 2
    scores = {}
    for name, features in (("recurrent", gdn), ("scratchpad", kv), ("both", np.concatenate([gdn, kv], 1))):
        mean, std = features[:half].mean(0), features[:half].std(0) + 1e-8  # standardised on the fitting half
        z = (features - mean) / std
        fit = RidgeCV(alphas=alphas).fit(z[:half], y[:half])
        scores[name] = float(r2_score(y[half:], fit.predict(z[half:])))
    return scores
