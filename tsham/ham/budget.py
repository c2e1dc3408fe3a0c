"""KV budgets at inference: set every router's threshold so that a chosen fraction of tokens is routed.

A router trained toward one target fraction keeps a fixed threshold tau at inference, so the fraction it
routes on new data drifts with the data. :func:`calibrate_kv_budget` re-derives tau from data: it runs one
forward in which every budgetable router sets tau to its own batch quantile at the requested fraction, layer
after layer (a later layer's scores depend on the earlier layers' routing, so one forward is exactly right).
Fraction 0 gives a pure Gated DeltaNet, fraction 1 full causal attention in every HAM layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from tsham.ham.routers import Router


def budgetable_routers(model: nn.Module) -> list[Router]:
    """The routers of ``model`` whose routed fraction a threshold sets (top-level ones; not composite children)."""
    routers = [m for m in model.modules() if isinstance(m, Router)]
    children = {id(c) for r in routers for c in r.children() if isinstance(c, Router)}
    return [r for r in routers if id(r) not in children and r.budgetable]


def set_kv_threshold(model: nn.Module, tau: float) -> None:
    """Sets tau of every budgetable router (``math.inf``: route nothing; ``-math.inf``: route everything)."""
    for router in _checked_routers(model):
        router.tau.fill_(tau)


@torch.no_grad()
def calibrate_kv_budget(model: nn.Module, fraction: float | Sequence[float], forward: Callable[[], object]
                        ) -> list[float]:
    """Sets every budgetable router's tau so that ``fraction`` of the valid tokens seen by ``forward()`` (all but
    a short series' left padding, ``RouterInput.valid``) are routed.

    Args:
        model: any module holding routers (a TshamModel, HamStack, HamLayer).
        fraction: target routed fraction in [0, 1] (or one per router, in :func:`budgetable_routers` order);
            0 and 1 set tau to +inf / -inf.
        forward: runs the model once on calibration data (contexts only: the future is never needed), e.g.
            ``lambda: model(past_target, horizon)``.

    Returns:
        the new tau per router (in model order).
    """
    routers = _checked_routers(model)
    fractions = [float(fraction)] * len(routers) if isinstance(fraction, int | float) else list(fraction)
    if len(fractions) != len(routers) or not all(0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"calibrate_kv_budget: give one fraction in [0, 1] or one per router ({len(routers)}); "
                         f"got {fraction}")
    extreme = {0.0: math.inf, 1.0: -math.inf}
    if all(f in extreme for f in fractions):  # nothing to measure
        for r, f in zip(routers, fractions, strict=True):
            r.tau.fill_(extreme[f])
        return [float(r.tau) for r in routers]
    saved = [(r.target, r.training) for r in routers]
    try:
        for r, f in zip(routers, fractions, strict=True):
            r.retarget(f)  # the next training-mode forward sets tau to its batch quantile
            r.train()
        forward()
        for r, f in zip(routers, fractions, strict=True):
            if f in extreme:  # a batch quantile would only bound this batch; +-inf bounds every input
                r.tau.fill_(extreme[f])
    finally:
        for r, (target, training) in zip(routers, saved, strict=True):
            r.target, r.calibrated = target, True
            r.train(training)
    return [float(r.tau) for r in routers]


def _checked_routers(model: nn.Module) -> list[Router]:
    routers = budgetable_routers(model)
    if not routers:
        policies = sorted({type(m).__name__ for m in model.modules() if isinstance(m, Router)})
        raise ValueError(f"no router of this model takes a KV budget (policies: {policies or 'none'}); "
                         "fixed policies (all, none, recency, oracle, event) decide the routed set themselves")
    return routers
