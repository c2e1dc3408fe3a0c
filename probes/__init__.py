"""Preservation probes (installed as ``tsham.probes``): seeded generators with needle-ablated twins, metrics."""

from tsham.probes.generators import LEVELS, PROBES, ProbeBatch, background
from tsham.probes.metrics import (
    codebook_accuracy,
    cosine_similarity,
    effect_metrics,
    nearest_value_accuracy,
    recall_skill,
    tolerance_accuracy,
)
from tsham.probes.runner import frontier_plot, run_probe, summarise

__all__ = ["LEVELS", "PROBES", "ProbeBatch", "background", "codebook_accuracy", "cosine_similarity",
           "effect_metrics", "frontier_plot", "nearest_value_accuracy", "recall_skill", "run_probe", "summarise",
           "tolerance_accuracy"]
