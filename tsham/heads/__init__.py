"""Forecast heads: quantile forecasts ``(B, Q, H)`` and their loss."""

from tsham.heads.quantile import DEFAULT_QUANTILES, HeadConfig, QuantileHead, pinball_loss

__all__ = ["DEFAULT_QUANTILES", "HeadConfig", "QuantileHead", "pinball_loss"]
