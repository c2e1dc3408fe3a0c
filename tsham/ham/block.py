"""HamBlock (norm, HAM mixer, MLP, residuals) and HamStack (blocks + final norm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tsham.ham.config import HamConfig
from tsham.ham.layer import HamLayer, LayerDiagnostics, check_inputs
from tsham.ham.state import HamLayerState


class SwiGLU(nn.Module):
    """Gated MLP ``x: [B, T, D] -> [B, T, D]`` with hidden width ``mlp_ratio * D * 2 / 3``."""

    def __init__(self, d_model: int, mlp_ratio: float = 4.0, device=None, dtype=None):
        super().__init__()
        hidden = int(mlp_ratio * d_model * 2 / 3)
        self.up = nn.Linear(d_model, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.down = nn.Linear(hidden, d_model, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(x).chunk(2, -1)
        return self.down(F.silu(a) * b)


class HamBlock(nn.Module):
    """Pre-norm residual block ``x: [B, T, D] -> [B, T, D]``: ``x + HAM(norm(x))``, then ``x + MLP(norm(x))``."""

    def __init__(self, config: HamConfig, layer_idx: int = 0, device=None, dtype=None):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps, device=device, dtype=dtype)
        self.mixer = HamLayer(config, layer_idx, device=device, dtype=dtype)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps, device=device, dtype=dtype)
        self.mlp = SwiGLU(config.d_model, config.mlp_ratio, device=device, dtype=dtype)

    def forward(self, x, flags=None, oracle_mask=None, return_state=False, validate=True, valid=None):
        """``x: [B, T, D]`` -> y, diagnostics (, state): as :meth:`HamLayer.forward`."""
        out = self.mixer(self.mixer_norm(x), flags, oracle_mask, return_state, validate, valid)
        x = x + out[0]
        return (x + self.mlp(self.mlp_norm(x)), *out[1:])

    def step(self, x, state, flags=None, oracle_mask=None, valid=None):
        """``x: [B, D]`` -> y ``[B, D]``, state, diagnostics: as :meth:`HamLayer.step`."""
        y, state, diag = self.mixer.step(self.mixer_norm(x), state, flags, oracle_mask, valid)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), state, diag


class HamStack(nn.Module):
    """``n_layers`` HAM blocks and a final RMSNorm: ``x: [B, T, D] -> [B, T, D]``.

    Args:
        config: :class:`HamConfig` (a per-layer router target may be a list).
    """

    def __init__(self, config: HamConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(HamBlock(config, i, device=device, dtype=dtype) for i in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps, device=device, dtype=dtype)

    def forward(
        self,
        x: torch.Tensor,
        flags: torch.Tensor | None = None,
        oracle_mask: torch.Tensor | None = None,
        return_state: bool = False,
        valid: torch.Tensor | None = None,
    ):
        """``x: [B, T, D]`` -> y ``[B, T, D]``, list of per-layer :class:`LayerDiagnostics` (, list of states).

        flags ``[B, T, F]``, oracle_mask ``[B, T]`` and valid ``[B, T]`` (the tokens that may be routed; None: all)
        reach every layer (:meth:`HamLayer.forward`).
        """
        check_inputs(x, self.config, flags, "HamStack")
        diags, states = [], []
        for block in self.blocks:
            # validated once above: a NaN check per layer would read a flag back from the GPU every layer
            x, diag, *state = block(x, flags, oracle_mask, return_state, validate=False, valid=valid)
            diags.append(diag)
            states += state
        x = self.norm(x)
        return (x, diags, states) if return_state else (x, diags)

    def init_state(self, batch_size: int, device=None) -> list[HamLayerState]:
        """Empty stream states, one per layer."""
        return [b.mixer.init_state(batch_size, device) for b in self.blocks]

    def step(
        self,
        x: torch.Tensor,
        states: list[HamLayerState],
        flags: torch.Tensor | None = None,
        oracle_mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[HamLayerState], list[LayerDiagnostics]]:
        """One token per stream: ``x: [B, D]`` -> y ``[B, D]``, states (updated in place), diagnostics; valid ``[B]``
        as :meth:`HamLayer.step`'s."""
        diags = []
        for block, state in zip(self.blocks, states, strict=True):
            x, _, diag = block.step(x, state, flags, oracle_mask, valid)
            diags.append(diag)
        return self.norm(x), states, diags

    def aux_loss(self, diags: list[LayerDiagnostics]) -> torch.Tensor | None:
        """Sum of the routers' auxiliary losses (None when no router has one)."""
        losses = [d.aux_loss for d in diags if d.aux_loss is not None]
        return torch.stack(losses).sum() if losses else None
