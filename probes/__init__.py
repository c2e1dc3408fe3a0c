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

__all__ = ["LEVELS", "PROBES", "ProbeBatch", "background", "codebook_accuracy", "cosine_similarity",
           "effect_metrics", "nearest_value_accuracy", "recall_skill", "tolerance_accuracy"]
