"""Training: optimizer groups, training windows from a series pool, the Lightning task and ``train``."""

from tsham.training.data import PoolSeries, WindowStream
from tsham.training.optim import make_optimizer, param_groups
from tsham.training.train import ForecastTask, TrainConfig, make_strategy, train

__all__ = ["ForecastTask", "PoolSeries", "TrainConfig", "WindowStream", "make_optimizer", "make_strategy",
           "param_groups", "train"]
