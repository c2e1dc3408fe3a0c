"""Using a trained model: the inference pipeline (arrays, tensors, pandas) and the GluonTS adapters.

The adapters import gluonts (and the Estimator Lightning) only when first used, so ``tsham forecast`` starts fast.
"""

from tsham.forecasting.pipeline import TshamPipeline
from tsham.forecasting.streaming import StreamingForecaster

__all__ = ["StreamingForecaster", "TshamEstimator", "TshamPipeline", "TshamPredictor"]


def __getattr__(name: str):
    if name in ("TshamEstimator", "TshamPredictor"):
        from tsham.forecasting import gluonts_adapter

        return getattr(gluonts_adapter, name)
    raise AttributeError(f"module 'tsham.forecasting' has no attribute {name!r}")
