"""HAM layers: Gated DeltaNet state + routed KV scratchpad, routers, blocks, stack and streaming state."""

from tsham.ham.block import HamBlock, HamStack, SwiGLU
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
    "build_router",
]
