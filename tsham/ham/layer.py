"""The HAM layer: a Gated DeltaNet state plus a routed KV scratchpad, merged by gates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tsham.ham.config import HamConfig
from tsham.ham.routers import RouterInput, RouterOutput, build_router
from tsham.ham.routers.base import per_head
from tsham.ham.routers.distilled import read_attention
from tsham.ham.state import HamLayerState
from tsham.ops import compact_routed, gated_delta, naive_gated_delta, scratchpad_attn, scratchpad_decode
from tsham.ops.backend import capturing


@dataclass
class LayerDiagnostics:
    """What one HAM layer did with a chunk (read by probes and training logs).

    Attributes:
        mask: routed tokens ``[B, T, H]`` bool. scores: router scores ``[B, T, H]`` or None.
        realised: routed fraction of the valid tokens (scalar tensor). counts: routed tokens per (stream, head)
        ``[B, H]``. aux_loss: the router's auxiliary loss or None. valid: the tokens that could be routed ``[B, T]``
        bool (a short series' left padding is not), or None for all.
    """

    mask: torch.Tensor
    scores: torch.Tensor | None
    realised: torch.Tensor
    counts: torch.Tensor
    aux_loss: torch.Tensor | None
    valid: torch.Tensor | None = None

    def routable(self) -> torch.Tensor:
        """The tokens each stream could route ``[B]`` (all ``T`` without ``valid``)."""
        if self.valid is None:
            return torch.full(self.mask.shape[:1], self.mask.shape[1], device=self.mask.device)
        return self.valid.sum(1)


def routed_fraction(mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The routed share of ``mask [B, T, H]`` over the ``valid [B, T]`` tokens (None: all), a scalar tensor (0
    where no token is valid)."""
    if valid is None:
        return mask.float().mean()
    return mask.float().sum() / (valid.float().sum() * mask.shape[-1]).clamp_min(1.0)


def rotary(positions: torch.Tensor, base: float, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rotary positions (RoPE, GPT-NeoX halves): each of ``tensors [B, T, H, K]`` with every pair (i, i + K/2)
    rotated by ``positions [T] * base^(-2i/K)``; a rotated query and key then score by content and offset alone,
    and norms are kept (the scratchpad's unit q, k stay unit)."""
    half = tensors[0].shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs  # (T, K/2)
    cos, sin = angles.cos()[None, :, None], angles.sin()[None, :, None]  # (1, T, 1, K/2)
    out = []
    for t in tensors:
        a, b = t.float().split(half, -1)
        out.append(torch.cat([a * cos - b * sin, a * sin + b * cos], -1).to(t.dtype))
    return tuple(out)


def check_inputs(x: torch.Tensor, config: HamConfig, flags: torch.Tensor | None, where: str) -> None:
    """x: ``[B, T, D]`` finite; flags: ``[B, T, F]`` or None. Else ValueError naming the problem.

    Shapes are always checked; finiteness only with ``config.check_inputs`` (it reads a flag back from the GPU).
    """
    if x.dim() != 3 or x.shape[-1] != config.d_model:
        raise ValueError(f"{where}: x must be [B, T, D={config.d_model}]; got {tuple(x.shape)}")
    if config.check_inputs and not capturing(x) and not torch.isfinite(x).all():
        raise ValueError(f"{where}: x contains NaN or inf; mark missing values with an observed mask before the "
                         "encoder instead of passing NaN")
    if flags is not None and (flags.dim() != 3 or flags.shape[:2] != x.shape[:2]):
        raise ValueError(f"{where}: flags must be [B, T, F] with B, T = {tuple(x.shape[:2])}; got {tuple(flags.shape)}")


class HamLayer(nn.Module):
    """Hybrid Associative Memory mixer: ``x: [B, T, D] -> [B, T, D]``.

    Per head: q, k, v from a short causal conv (SiLU), q and k L2-normalised; the gated delta rule
    gives ``o_gdn`` and the prediction error e_t; the router picks tokens; the scratchpad attends to them
    with a learned per-head temperature; ``o = sigma(Wr x) RMSNorm(o_gdn) + sigma(Wk x) RMSNorm(o_kv)``;
    then a SiLU output gate and the output projection.

    Args:
        config: widths, router and its arguments (see :class:`HamConfig`).
        layer_idx: depth of this layer (per-layer router targets).

    Parameters: ``D * (2HK + 2HV + 4H) + HV * D + conv_size * (2HK + HV) + 3H + 2V`` plus the router's.
    """

    def __init__(self, config: HamConfig, layer_idx: int = 0, device=None, dtype=None):
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        c = config
        self.config, self.layer_idx = c, layer_idx
        H, K, V, D = c.num_heads, c.head_dim, c.head_dim_v, c.d_model
        self.qkv_proj = nn.Linear(D, H * (2 * K + V), bias=False, **factory_kwargs)
        self.conv_weight = nn.Parameter(torch.empty(H * (2 * K + V), c.conv_size, **factory_kwargs))
        self.ab_proj = nn.Linear(D, 2 * H, bias=False, **factory_kwargs)  # decay input a, write strength b
        self.A_log = nn.Parameter(torch.empty(H, **factory_kwargs))
        self.dt_bias = nn.Parameter(torch.empty(H, **factory_kwargs))
        self.merge_proj = nn.Linear(D, 2 * H, **factory_kwargs)  # per-head gates of the GDN and scratchpad reads
        # the scratchpad's own queries and keys (HamConfig.kv_own_qk), without the GDN's short convolution
        self.kv_qk_proj = nn.Linear(D, 2 * H * K, bias=False, **factory_kwargs) if c.kv_own_qk else None
        self.kv_log_scale = nn.Parameter(torch.full((H,), math.log(math.sqrt(K)), **factory_kwargs))
        self.gdn_norm = nn.Parameter(torch.ones(V, **factory_kwargs))
        self.kv_norm = nn.Parameter(torch.ones(V, **factory_kwargs))
        self.gate_proj = nn.Linear(D, H * V, bias=False, **factory_kwargs)
        self.o_proj = nn.Linear(H * V, D, bias=False, **factory_kwargs)
        self.router = build_router(c.router, D, layer_idx, H, **c.router_kwargs_for(layer_idx))
        self.router.bind_layer(K, V)
        for p in (self.A_log, self.dt_bias, self.kv_log_scale, self.conv_weight):
            p._no_weight_decay = True  # rates, biases and temperatures: decay would pull them to meaningless values
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.uniform_(self.conv_weight, -(self.config.conv_size**-0.5), self.config.conv_size**-0.5)
        self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())  # decay rates, as in Mamba-2 / GDN
        dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        nn.init.zeros_(self.merge_proj.weight)
        nn.init.zeros_(self.merge_proj.bias)

    # -- stages shared by the parallel forward and the streaming step -------------------------------------------
    def project(self, x: torch.Tensor, conv_prefix: torch.Tensor | None = None):
        """``x: [B, T, D]`` -> q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, g, beta ``[B, T, H]``, conv tail.

        ``conv_prefix`` ``[B, W-1, C]`` holds the pre-conv projections before x (zeros when None); the
        returned tail is the last ``W-1`` of them, the conv state for the next chunk.
        """
        c = self.config
        H, K, W = c.num_heads, c.head_dim, c.conv_size
        u = self.qkv_proj(x)  # (B, T, C)
        if conv_prefix is None:
            conv_prefix = u.new_zeros(u.shape[0], W - 1, u.shape[-1])
        u = torch.cat([conv_prefix.to(u.dtype), u], 1)
        tail = u[:, u.shape[1] - (W - 1):]
        u = F.silu(F.conv1d(u.transpose(1, 2), self.conv_weight[:, None], groups=u.shape[-1]).transpose(1, 2))
        q, k, v = u.split([H * K, H * K, u.shape[-1] - 2 * H * K], -1)
        v = rearrange(v, "b t (h d) -> b t h d", h=H)  # (B, T, H, V)
        # Normalise in fp32, then one dtype for q, k, v (the kernels' matmuls take a single input dtype).
        q, k = (F.normalize(rearrange(t, "b t (h d) -> b t h d", h=H).float(), dim=-1).to(v.dtype) for t in (q, k))
        a, b = self.ab_proj(x).float().chunk(2, -1)  # (B, T, H) each
        g = -self.A_log.float().exp() * F.softplus(a + self.dt_bias.float())  # log decay stays fp32
        return q, k, v, g, torch.sigmoid(b).to(v.dtype), tail

    def merge(self, x: torch.Tensor, o_gdn: torch.Tensor, o_kv: torch.Tensor) -> torch.Tensor:
        """Gated merge of the two reads ``[B, T, H, V]`` and the output projection -> ``[B, T, D]``."""
        V, eps = self.config.head_dim_v, self.config.norm_eps
        gate_gdn, gate_kv = torch.sigmoid(self.merge_proj(x)).unsqueeze(-1).chunk(2, -2)  # (B, T, H, 1) each
        o = gate_gdn * F.rms_norm(o_gdn, (V,), self.gdn_norm, eps) + gate_kv * F.rms_norm(o_kv, (V,), self.kv_norm, eps)
        o = rearrange(o, "b t h v -> b t (h v)") * F.silu(self.gate_proj(x))
        return self.o_proj(o.to(x.dtype))

    def kv_query(self, q: torch.Tensor) -> torch.Tensor:
        """Scratchpad queries: the GDN queries times a learned per-head temperature (q and k are unit vectors)."""
        return (q.float() * self.kv_log_scale.float().exp()[:, None]).to(q.dtype)

    def kv_read_inputs(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0, x: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The scratchpad's queries and keys ``[B, T, H, K]`` for tokens at stream positions ``offset + t``: the
        GDN's unit ``q``, ``k`` (or, with ``config.kv_own_qk``, unit projections of the layer input ``x [B, T, D]``),
        :meth:`kv_query`, then rotary positions where ``config.kv_rope_base`` is set (the GDN reads q, k as they
        are). Keys are cached rotated, so a stream's step and the parallel forward agree."""
        if self.kv_qk_proj is not None:
            if x is None:
                raise ValueError("kv_read_inputs: this layer has its own scratchpad queries and keys; pass x")
            H = self.config.num_heads
            q, k = (F.normalize(rearrange(t, "b t (h d) -> b t h d", h=H).float(), dim=-1).to(q.dtype)
                    for t in self.kv_qk_proj(x).chunk(2, -1))
        q = self.kv_query(q)
        if not self.config.kv_rope_base:
            return q, k
        positions = torch.arange(offset, offset + q.shape[1], device=q.device)
        return rotary(positions, self.config.kv_rope_base, q, k)

    # -- parallel forward --------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        flags: torch.Tensor | None = None,
        oracle_mask: torch.Tensor | None = None,
        return_state: bool = False,
        validate: bool = True,
        valid: torch.Tensor | None = None,
    ):
        """``x: [B, T, D] -> y [B, T, D]``, :class:`LayerDiagnostics` (and the stream state if asked).

        Args:
            flags: event flags ``[B, T, F]`` for the event router. oracle_mask: ``[B, T]`` for the oracle router
                and a guided one (:meth:`routed_mask`).
            return_state: also return a :class:`HamLayerState` from which :meth:`step` continues the stream.
            validate: check the inputs (HamStack checks once for all its layers and passes False).
            valid: ``[B, T]`` bool, the tokens that may enter the scratchpad (None: all); the rest (a short
                series' left padding) is never routed and the realised fraction counts only valid tokens.
        """
        if validate:
            check_inputs(x, self.config, flags, "HamLayer")
        q, k, v, g, beta, tail = self.project(x)
        o_gdn, final, e = gated_delta(q, k, v, g, beta, output_final_state=return_state)
        x_prev = F.pad(x, (0, 0, 1, -1))
        q_kv, k_kv = self.kv_read_inputs(q, k, x=x)
        reads = self.router.attention_queries
        attention = read_attention(q_kv, k_kv, reads, valid) if self.training and reads else None
        route = self.router(RouterInput(x, x_prev, e.detach(), v.detach().float(), flags, oracle_mask, valid=valid,
                                        key=k_kv.detach(), attention=attention))
        mask = self.routed_mask(route, oracle_mask, valid)
        scale = route.value_scale
        if scale is not None and self.router.guided:  # the guide's own tokens teach the read, not the router's score
            scale = torch.where(route.mask, scale, scale.detach())
        v_kv = v if scale is None else v * scale[..., None].to(v.dtype)
        # On CUDA the index tensor keeps all T slots: no host sync; the kernels read the counts.
        indices, counts = compact_routed(mask, slots=x.shape[1] if x.is_cuda else None)
        o_kv = scratchpad_attn(q_kv, k_kv, v_kv, indices, counts, scale=1.0, window=route.window, sinks=route.sinks)
        y = self.merge(x, o_gdn, o_kv.float())
        diag = LayerDiagnostics(mask, route.scores, routed_fraction(mask, valid), counts, route.aux_loss, valid)
        if not return_state:
            return y, diag
        state = self.init_state(x.shape[0], x.device, offset=0)
        state.gdn, state.conv, state.x_prev, state.offset = final, tail, x[:, -1], x.shape[1]
        state.window, state.sinks = route.window, route.sinks
        state.append(k_kv, v.float(), mask)
        return y, diag, state

    def routed_mask(self, route: RouterOutput, oracle_mask: torch.Tensor | None,
                    valid: torch.Tensor | None) -> torch.Tensor:
        """The tokens that enter the scratchpad, ``[B, T, H]`` bool: the router's; while the router is guided (a
        training curriculum's first stage, ``Router.guided``) also the needles given as ``oracle_mask`` ``[B, T]``
        / ``[B, T, H]``; never a token outside ``valid`` ``[B, T]``."""
        mask = route.mask
        if self.router.guided:
            if oracle_mask is None:
                raise ValueError("HamLayer: a guided router routes the needles on top of its own tokens; give them "
                                 "as oracle_mask [B, T] (TshamModel: oracle_steps)")
            mask = mask | per_head(oracle_mask.bool(), mask.shape[-1])
        return mask if valid is None else mask & valid[..., None]

    # -- streaming ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, offset: int = 0) -> HamLayerState:
        """An empty stream state for ``batch_size`` streams."""
        c = self.config
        H, K, V = c.num_heads, c.head_dim, c.head_dim_v
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        return HamLayerState(
            gdn=z(batch_size, H, K, V), conv=z(batch_size, c.conv_size - 1, H * (2 * K + V)),
            k_cache=z(batch_size, 1, H, K), v_cache=z(batch_size, 1, H, V),
            counts=torch.zeros(batch_size, H, dtype=torch.long, device=device), x_prev=z(batch_size, c.d_model),
            offset=offset, window=self.router.cap, sinks=self.router.sinks,
        )

    def step(
        self,
        x: torch.Tensor,
        state: HamLayerState,
        flags: torch.Tensor | None = None,
        oracle_mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, HamLayerState, LayerDiagnostics]:
        """One token per stream: ``x: [B, D] -> y [B, D]``; ``state`` is updated in place and returned.

        flags ``[B, F]``, oracle_mask ``[B]`` / ``[B, H]`` and valid ``[B]`` (as :meth:`forward`'s) are the current
        token's.
        """
        x = x[:, None]  # (B, 1, D)
        flags = None if flags is None else flags[:, None]
        oracle_mask = None if oracle_mask is None else oracle_mask[:, None]
        valid = None if valid is None else valid[:, None]
        check_inputs(x, self.config, flags, "HamLayer.step")
        q, k, v, g, beta, state.conv = self.project(x, state.conv)
        o_gdn, state.gdn, e = naive_gated_delta(q, k, v, g, beta, initial_state=state.gdn, output_final_state=True)
        q_kv, k_kv = self.kv_read_inputs(q, k, state.offset, x)
        route = self.router(RouterInput(x, state.x_prev[:, None], e, v.float(), flags, oracle_mask, offset=state.offset,
                                        valid=valid, key=k_kv.detach()))
        mask = self.routed_mask(route, oracle_mask, valid)
        state.append(k_kv, v.float(), mask)
        k_cache, v_cache, live = state.cache()
        o_kv = scratchpad_decode(q_kv[:, 0], k_cache, v_cache, live, scale=1.0)
        y = self.merge(x, o_gdn, o_kv[:, None].float())[:, 0]
        state.x_prev, state.offset = x[:, 0], state.offset + 1
        diag = LayerDiagnostics(mask, route.scores, routed_fraction(mask, valid), state.counts, route.aux_loss,
                                valid)
        return y, state, diag
