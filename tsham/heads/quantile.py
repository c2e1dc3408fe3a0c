"""Quantile forecast head and the pinball loss. Quantile forecasts are ``(B, Q, H)`` everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsham.ops.backend import device_constant

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class HeadConfig:
    """The forecast head."""

    d_model: int = 64  # width of the representation it reads
    max_horizon: int = 720  # steps produced directly (one linear map); shorter horizons take a prefix
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES  # levels, ascending; the median must be one of them

    def __post_init__(self):
        q = tuple(float(x) for x in self.quantiles)
        if not q or any(not 0.0 < x < 1.0 for x in q) or list(q) != sorted(set(q)):
            raise ValueError(f"HeadConfig: quantiles must be distinct, ascending, inside (0, 1); got {q}")
        if 0.5 not in q:
            raise ValueError(f"HeadConfig: the point forecast is the median, so 0.5 must be a quantile; got {q}")
        if self.max_horizon <= 0:
            raise ValueError(f"HeadConfig: max_horizon must be positive; got {self.max_horizon}")
        self.quantiles = q


class QuantileHead(nn.Module):
    """Direct multi-step quantile forecast: ``h: [N, D] -> (N, Q, horizon)`` (N = series x target channels).

    One MLP and one linear map produce all ``max_horizon`` steps at once (no rollout, so no error feedback
    and one forward per forecast); a horizon below ``max_horizon`` takes the first steps. At inference the
    quantiles are sorted per step, so they never cross.

    Args:
        config: :class:`HeadConfig`.
    """

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        D, Q = config.d_model, len(config.quantiles)
        self.mlp = nn.Sequential(nn.Linear(D, D), nn.GELU())
        self.out = nn.Linear(D, Q * config.max_horizon)

    def forward(self, h: torch.Tensor, horizon: int) -> torch.Tensor:
        """``h: [N, D]`` -> quantiles ``(N, Q, horizon)`` (float32; sorted along Q outside training)."""
        if not 0 < horizon <= self.config.max_horizon:
            raise ValueError(f"QuantileHead: horizon must lie in 1..{self.config.max_horizon}; got {horizon}")
        if h.dim() != 2 or h.shape[-1] != self.config.d_model:
            raise ValueError(f"QuantileHead: h must be [N, D={self.config.d_model}]; got {tuple(h.shape)}")
        Q = len(self.config.quantiles)
        out = self.out(self.mlp(h)).float().view(h.shape[0], Q, self.config.max_horizon)[..., :horizon]
        return out if self.training else out.sort(dim=1).values

    @property
    def median_index(self) -> int:
        return self.config.quantiles.index(0.5)


def pinball_loss(
    pred: torch.Tensor, target: torch.Tensor, observed: torch.Tensor | None, quantiles: tuple[float, ...]
) -> torch.Tensor:
    """Mean quantile (pinball) loss over quantiles and observed steps.

    Args:
        pred: ``(B, Q, H)``; target: ``[B, H]``; observed: ``[B, H]`` (1 where the target is known) or None.
        quantiles: the Q levels.

    Returns:
        scalar: ``mean over observed (b, h) of sum_q 2 * max(q (y - y_q), (q - 1)(y - y_q)) / Q`` (twice the
        pinball loss, so the median term equals the absolute error).
    """
    if pred.dim() != 3 or pred.shape[1] != len(quantiles) or pred.shape[::2] != target.shape:
        raise ValueError(f"pinball_loss: pred must be (B, Q={len(quantiles)}, H) and target [B, H]; got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    q = device_constant(tuple(quantiles), pred.dtype, pred.device)[None, :, None]
    diff = target[:, None].to(pred.dtype) - pred
    loss = 2 * torch.maximum(q * diff, (q - 1) * diff).mean(1)  # (B, H)
    if observed is None:
        return loss.mean()
    weight = observed.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)
