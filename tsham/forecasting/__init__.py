"""Using a trained model: the inference pipeline (arrays, tensors, pandas) and the GluonTS adapters."""

from tsham.forecasting.gluonts_adapter import TshamEstimator, TshamPredictor
from tsham.forecasting.pipeline import TshamPipeline

__all__ = ["TshamEstimator", "TshamPipeline", "TshamPredictor"]
