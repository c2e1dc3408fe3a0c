"""Using a trained model: the inference pipeline (arrays, tensors, pandas)."""

from tsham.forecasting.pipeline import TshamPipeline

__all__ = ["TshamPipeline"]
