"""tsham: time-series foundation models on Hybrid Associative Memory layers."""

__version__ = "0.1.0"
