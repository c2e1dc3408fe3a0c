"""Routing policies, one file each, one constructor contract, picked by name.

>>> router = build_router("surprise", d_model=64, layer_idx=0, num_heads=4, target=0.1)
"""

from __future__ import annotations

from tsham.ham.routers.base import Router, RouterInput, RouterOutput
from tsham.ham.routers.composite import CompositeRouter
from tsham.ham.routers.distilled import DistilledRouter
from tsham.ham.routers.event import EventRouter
from tsham.ham.routers.fixed import AllRouter, NoneRouter, OracleRouter, RecencyRouter
from tsham.ham.routers.learned import LearnedRouter
from tsham.ham.routers.random import RandomRouter
from tsham.ham.routers.surprise import SurpriseRouter
from tsham.ham.routers.uncertainty import UncertaintyRouter

ROUTERS: dict[str, type[Router]] = {
    "surprise": SurpriseRouter,
    "uncertainty": UncertaintyRouter,
    "event": EventRouter,
    "learned": LearnedRouter,
    "distilled": DistilledRouter,
    "composite": CompositeRouter,
    "random": RandomRouter,
    "recency": RecencyRouter,
    "all": AllRouter,
    "none": NoneRouter,
    "oracle": OracleRouter,
}


def build_router(name: str, d_model: int, layer_idx: int, num_heads: int, **policy_kwargs) -> Router:
    """Builds the router registered as ``name``; unknown names and arguments raise ValueError."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}; known routers: {', '.join(sorted(ROUTERS))}")
    try:
        return ROUTERS[name](d_model, layer_idx, num_heads, **policy_kwargs)
    except TypeError as err:  # an unexpected keyword: say which router and what it takes
        raise ValueError(f"router {name!r}: {err}") from None


__all__ = ["ROUTERS", "Router", "RouterInput", "RouterOutput", "build_router"]
