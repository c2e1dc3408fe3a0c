"""Missing values and per-channel instance scaling, computed on observed values only."""

from __future__ import annotations

import torch


def observed_mask(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN means missing: ``values [..]`` -> (values with NaN replaced by 0, observed mask, same shape, bool).

    Infinite values are not missing data but broken data: they raise ValueError.
    """
    if torch.isinf(values).any():
        raise ValueError("series contains inf; use NaN for missing values")
    observed = ~torch.isnan(values)
    return torch.where(observed, values, torch.zeros_like(values)), observed


MIN_SCALE = 1e-5  # relative spread under which a channel counts as constant (scaler and flat forecasts alike)


class InstanceScaler:
    """Per-series, per-channel standardisation on observed values only; invertible.

    ``scaled = (x - loc) / scale`` with loc the observed mean and scale the observed standard deviation of
    each (series, channel) over the time axis, computed in float64 (float32 sums of squares overflow near
    1e19). Robust cases: a channel with no observed value gets loc 0, scale 1; a constant channel (std at most
    ``min_scale * |loc|``, relative, so that a series of tiny values is not taken for a constant) gets scale
    ``|loc|`` (1 at level 0), so it maps to 0 exactly and its level is kept in ``loc``. Missing positions come
    out as 0.

    Args:
        min_scale: relative floor under which a channel counts as constant.

    Examples::
        >>> scaler = InstanceScaler()
        >>> scaled, loc, scale = scaler(past_target, past_observed)  # [B, T, C] each, loc/scale [B, 1, C]
        >>> forecast = scaler.inverse(scaled_forecast, loc, scale)
    """

    def __init__(self, min_scale: float = MIN_SCALE):
        self.min_scale = min_scale

    def __call__(self, values: torch.Tensor, observed: torch.Tensor | None = None):
        """values ``[B, T, C]`` (NaN = missing unless ``observed`` is given) -> scaled ``[B, T, C]`` float32,
        loc ``[B, 1, C]``, scale ``[B, 1, C]``."""
        if values.dim() != 3:
            raise ValueError(f"InstanceScaler: values must be [B, T, C]; got {tuple(values.shape)}")
        values = values.float()
        if observed is None:
            values, observed = observed_mask(values)
        elif observed.shape != values.shape:
            raise ValueError(f"InstanceScaler: observed mask {tuple(observed.shape)} does not match values "
                             f"{tuple(values.shape)}")
        else:
            observed = observed.bool()
            values = torch.where(observed, values, torch.zeros_like(values))
        wide = values.double()  # only the two reductions need float64
        weight = observed.double()
        n = weight.sum(1, keepdim=True).clamp_min(1)  # (B, 1, C)
        loc = (wide * weight).sum(1, keepdim=True) / n
        std = (((wide - loc).pow(2) * weight).sum(1, keepdim=True) / n).sqrt()
        constant = std <= self.min_scale * loc.abs()
        loc, scale = loc.float(), torch.where(constant, torch.where(loc != 0, loc.abs(), 1.0), std).float()
        scaled = torch.where(observed, (values - loc) / scale, torch.zeros_like(values))
        return scaled, loc, scale

    @staticmethod
    def inverse(scaled: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Back to data units: ``scaled * scale + loc``; scaled may carry extra leading axes (e.g. quantiles)."""
        return scaled * scale + loc


def observed_range(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values [B, T, C]`` (NaN = missing) -> the lowest and highest observed value per (series, channel),
    ``[B, C]`` each; +inf and -inf where nothing is observed."""
    missing = values.isnan()
    low = torch.where(missing, torch.inf, values).amin(1)
    high = torch.where(missing, -torch.inf, values).amax(1)
    return low, high


def flat_where_constant(quantiles: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                        rel: float = MIN_SCALE) -> torch.Tensor:
    """``quantiles [B, C, Q, H]`` with every channel whose observed history is constant forecast flat, every
    quantile alike, at the middle of its range: ``high - low <= rel * max(|low|, |high|)`` (``low``, ``high``
    ``[B, C]`` from :func:`observed_range`; exactly one value, or a spread within :class:`InstanceScaler`'s relative
    floor, e.g. a counter at 1e6 that moved by 1).

    Why: the scaler maps such a history to (nearly) all zeros with scale ``|level|``, so the model's forecast is its
    prior spread for a featureless input times the level (a history of 1000s once came out as median 769 with a
    band of +-1600; 1e6 that moved by 1, as median 996000 with a band of +-3000); with nothing in the history to
    scale a spread by, the history's value is the forecast. Not caught: a level with a single rare spike whose
    standard deviation, not range, falls under the floor."""
    flat = ((high - low) <= rel * torch.maximum(low.abs(), high.abs()))[..., None, None]
    middle = low + (high - low) / 2  # low == high: the value itself, exactly
    return torch.where(flat, middle[..., None, None].to(quantiles.dtype).expand_as(quantiles), quantiles)
