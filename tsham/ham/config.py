"""Typed configuration of the HAM stack (saved inside every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class HamConfig:
    """One HAM stack: widths, the GDN, the router and the scratchpad.

    ``router_kwargs`` go to the router's constructor (threshold, target, cap, ...); a ``target`` given as a
    list sets one target fraction per layer.
    """

    d_model: int = 64  # width of the residual stream
    n_layers: int = 2  # HAM blocks in the stack
    num_heads: int = 4  # heads of both the GDN and the scratchpad
    head_dim: int = 16  # K: key/query width per head
    expand_v: int = 1  # V = expand_v * head_dim
    conv_size: int = 4  # short causal convolution on q, k, v (as in Gated DeltaNet)
    chunk_size: int = 64  # GDN chunk on the torch path
    router: str = "surprise"  # routing policy (tsham.ham.routers.ROUTERS)
    router_kwargs: dict = field(default_factory=dict)  # policy arguments, e.g. {"target": 0.1}
    kv_rope_base: float = 0.0  # rotary positions on the scratchpad's queries and keys (0: none, as trained before)
    # the scratchpad's own query and key projections of the layer input (default: it reads the GDN's q and k, which
    # the delta rule also shapes)
    kv_own_qk: bool = False
    mlp_ratio: float = 4.0  # SwiGLU hidden width = mlp_ratio * d_model * 2 / 3
    norm_eps: float = 1e-6  # RMSNorm epsilon
    check_inputs: bool = True  # validate shapes and finiteness on every call (the NaN check syncs a GPU)

    def __post_init__(self):
        if self.d_model <= 0 or self.n_layers <= 0 or self.num_heads <= 0 or self.head_dim <= 0:
            raise ValueError(f"HamConfig: widths and depths must be positive; got {self}")
        if self.kv_rope_base < 0 or (self.kv_rope_base and self.head_dim % 2):
            raise ValueError(f"HamConfig: kv_rope_base must be 0 (off) or positive with an even head_dim; got "
                             f"{self.kv_rope_base} with head_dim {self.head_dim}")
        target = self.router_kwargs.get("target")
        if isinstance(target, (list, tuple)) and len(target) != self.n_layers:
            raise ValueError(f"HamConfig: a per-layer target needs {self.n_layers} values; got {len(target)}")

    @property
    def head_dim_v(self) -> int:
        return self.expand_v * self.head_dim

    def router_kwargs_for(self, layer_idx: int) -> dict:
        """The router arguments of one layer (a per-layer target list resolved)."""
        kwargs = dict(self.router_kwargs)
        if isinstance(kwargs.get("target"), (list, tuple)):
            kwargs["target"] = kwargs["target"][layer_idx]
        return kwargs

    def to_dict(self) -> dict:
        return asdict(self)
