"""Forecast heads: quantile forecasts ``(B, Q, H)``, their loss, and the seasonal prior added to them."""

from tsham.heads.quantile import DEFAULT_QUANTILES, HeadConfig, QuantileHead, pinball_loss
from tsham.heads.seasonal import (
    DEFAULT_LAGS,
    DEFAULT_MEANS,
    PriorConfig,
    SeasonalCopies,
    SeasonalPrior,
    carry_scores,
    parse_means,
)

__all__ = ["DEFAULT_LAGS", "DEFAULT_MEANS", "DEFAULT_QUANTILES", "HeadConfig", "PriorConfig", "QuantileHead",
           "SeasonalCopies", "SeasonalPrior", "carry_scores", "parse_means", "pinball_loss"]
