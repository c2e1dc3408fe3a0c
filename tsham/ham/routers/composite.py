"""Composite routing: combine several policies (e.g. surprise + event flags)."""

from __future__ import annotations

import torch
from torch import nn

from tsham.ham.routers.base import Router, RouterInput, RouterOutput


class CompositeRouter(Router):
    """Routes a token when any child routes it (``mode="or"``), or on the max of the children's scores.

    Args:
        routers: children as ``{"name": ..., **policy_kwargs}`` dicts, built through the registry.
        mode: ``"or"`` (union of the children's masks, each child keeps its own threshold) or ``"max"``
            (max of the children's scores against this router's own threshold / controller).
        **kwargs: threshold / target / controller_lr (mode "max") and cap / sinks of :class:`Router`.
    """

    def __init__(self, d_model, layer_idx, num_heads, routers: list[dict] | None = None, mode: str = "or", **kwargs):
        from tsham.ham.routers import build_router

        if not routers:
            raise ValueError("CompositeRouter: give at least one child, e.g. routers=[{'name': 'surprise'}]")
        if mode not in ("or", "max"):
            raise ValueError(f"CompositeRouter: mode must be 'or' or 'max'; got {mode!r}")
        super().__init__(d_model, layer_idx, num_heads, **kwargs)
        self.mode = mode
        self.budgetable = mode == "max"  # in "or" mode each child keeps its own threshold
        self.children_ = nn.ModuleList(
            build_router(c["name"], d_model, layer_idx, num_heads, **{k: v for k, v in c.items() if k != "name"})
            for c in routers
        )

    def bind_layer(self, key_dim: int, value_dim: int) -> None:
        for child in self.children_:
            child.bind_layer(key_dim, value_dim)
        # a child fitted to the layer's attention asks for it through the composite
        self.attention_queries = max(child.attention_queries for child in self.children_)

    def forward(self, inp: RouterInput) -> RouterOutput:
        outs = [r(inp) for r in self.children_]
        if self.mode == "or":
            mask = torch.stack([o.mask for o in outs]).any(0)
            scores = None
        else:
            if any(o.scores is None for o in outs):
                raise ValueError("CompositeRouter: mode 'max' needs score-based children")
            scores = torch.stack([o.scores for o in outs]).amax(0)
            mask = self.threshold(scores, inp.valid)
        value_scale, aux = None, None
        for o in outs:
            if o.value_scale is not None:
                value_scale = o.value_scale if value_scale is None else value_scale * o.value_scale
            if o.aux_loss is not None:
                aux = o.aux_loss if aux is None else aux + o.aux_loss
        return RouterOutput(mask=mask, scores=scores, value_scale=value_scale, aux_loss=aux, window=self.cap,
                            sinks=self.sinks)
