"""Training utilities (the training loop and checkpoints arrive with the forecasting model)."""

from tsham.training.optim import make_optimizer, param_groups

__all__ = ["make_optimizer", "param_groups"]
