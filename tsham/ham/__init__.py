"""HAM layers: Gated DeltaNet state + routed KV scratchpad, routers, blocks, stack and streaming state."""

from tsham.ham.block import HamBlock, HamStack, SwiGLU
from tsham.ham.budget import budgetable_routers, calibrate_kv_budget, set_kv_threshold
from tsham.ham.config import HamConfig
from tsham.ham.layer import HamLayer, LayerDiagnostics
from tsham.ham.routers import ROUTERS, Router, RouterInput, RouterOutput, build_router
from tsham.ham.state import HamLayerState

__all__ = [
    "ROUTERS",
    "HamBlock",
    "HamConfig",
    "HamLayer",
    "HamLayerState",
    "HamStack",
    "LayerDiagnostics",
    "Router",
    "RouterInput",
    "RouterOutput",
    "SwiGLU",
    "budgetable_routers",
    "build_router",
    "calibrate_kv_budget",
    "set_kv_threshold",
]
