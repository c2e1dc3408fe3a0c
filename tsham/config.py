"""The forecasting model's configuration: one typed dataclass per stage, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from tsham.ham.config import HamConfig
from tsham.heads.quantile import HeadConfig
from tsham.heads.seasonal import PriorConfig
from tsham.patch.encoder import PatchConfig

FORMAT_VERSION = 1  # bump when a checkpoint written by an older tsham can no longer be read as is


@dataclass
class TshamConfig:
    """A whole forecasting model.

    The patch width is the head's output per future token (``head.max_horizon == patch.patch_length``) and
    patches do not overlap (``stride == patch_length``), so context and horizon split at a patch boundary.
    ``patch.d_model``, ``ham.d_model`` and ``head.d_model`` must agree.
    """

    patch: PatchConfig = field(default_factory=PatchConfig)
    ham: HamConfig = field(default_factory=HamConfig)
    head: HeadConfig = field(default_factory=lambda: HeadConfig(max_horizon=16))
    prior: PriorConfig = field(default_factory=PriorConfig)  # seasonal copies added to the head (off: no lags)
    context_length: int = 512  # steps of history the model is trained on (longer contexts are allowed)
    max_horizon: int = 720  # longest forecast asked of the model
    # where patches are cut by default ("end": the last context patch ends at T; "start": patches start at
    # step 0 and a partial last patch opens the forecast; see TshamModel.forward). Streams always cut at the
    # start, so models meant for streaming train with "start" (TrainConfig.align_jitter).
    align: str = "end"

    def __post_init__(self):
        p, h = self.patch, self.head
        if p.stride != p.patch_length:
            raise ValueError(f"TshamConfig: the forecaster needs non-overlapping patches; got stride {p.stride} "
                             f"!= patch_length {p.patch_length}")
        if h.max_horizon != p.patch_length:
            raise ValueError(f"TshamConfig: head.max_horizon ({h.max_horizon}) must equal patch_length "
                             f"({p.patch_length}): the head emits one patch per future token")
        if not p.d_model == self.ham.d_model == h.d_model:
            raise ValueError(f"TshamConfig: d_model differs across stages: patch {p.d_model}, ham "
                             f"{self.ham.d_model}, head {h.d_model}")
        if self.align not in ("end", "start"):
            raise ValueError(f"TshamConfig: align must be 'end' or 'start'; got {self.align!r}")
        if self.context_length <= 0 or self.max_horizon <= 0:
            raise ValueError(f"TshamConfig: context_length and max_horizon must be positive; got "
                             f"{self.context_length}, {self.max_horizon}")

    @classmethod
    def small(cls, d_model: int = 64, patch_length: int = 16, **ham_kwargs) -> TshamConfig:
        """A consistent config at one width (the widths of every stage set together)."""
        return cls(
            patch=PatchConfig(patch_length=patch_length, stride=patch_length, d_model=d_model),
            ham=HamConfig(d_model=d_model, **ham_kwargs),
            head=HeadConfig(d_model=d_model, max_horizon=patch_length),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TshamConfig:
        """Rebuilds a config, naming any unknown key (e.g. from a newer tsham) instead of failing deep inside."""
        stages = {"patch": PatchConfig, "ham": HamConfig, "head": HeadConfig, "prior": PriorConfig}
        kwargs = {}
        for key, value in data.items():
            if key in stages:
                known = {f.name for f in fields(stages[key])}
                unknown = set(value) - known
                if unknown:
                    raise ValueError(f"config.{key} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
                if key == "head":
                    value = {**value, "quantiles": tuple(value["quantiles"])}
                kwargs[key] = stages[key](**value)
            elif key in {f.name for f in fields(cls)}:
                kwargs[key] = value
            else:
                raise ValueError(f"config has an unknown field {key!r}")
        return cls(**kwargs)
