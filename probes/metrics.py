"""Probe metrics (../shared/PROBES.md): recall skill against the needle-ablated twin, tolerance and codebook
accuracy. All take arrays ``[N, H, C]`` (predictions, the twin's predictions, targets) and return per-example
values ``[N]`` so results can be written one row per example."""

from __future__ import annotations

import numpy as np


def window_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-example mean squared error over every other axis: ``[N, ...]`` x2 -> ``[N]`` (float64)."""
    return ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).reshape(len(a), -1).mean(1)


def recall_skill(pred: np.ndarray, pred_ablated: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``RS = 1 - MSE(pred, y) / MSE(pred_ablated, y)``, clipped to [-1, 1]: 1 perfect recall, 0 memory unused."""
    denom = window_mse(pred_ablated, target)
    rs = 1.0 - window_mse(pred, target) / np.where(denom > 0, denom, np.nan)
    return np.clip(np.nan_to_num(rs, nan=0.0), -1.0, 1.0)


def tolerance_accuracy(pred: np.ndarray, target: np.ndarray, tolerance) -> np.ndarray:
    """1 where the window RMSE is below ``tolerance`` (a float or one per example ``[N]``, e.g. 0.25 x the
    needle's scale), else 0."""
    return (np.sqrt(window_mse(pred, target)) < tolerance).astype(np.float64)


def nearest_value_accuracy(pred: np.ndarray, target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """1 where the candidate nearest to ``pred`` (``[N, d]``; candidates ``[N, K, d]``) is the target."""
    pred, target = np.asarray(pred).reshape(len(pred), -1), np.asarray(target).reshape(len(target), -1)
    dist = ((candidates - pred[:, None]) ** 2).sum(-1)
    truth = ((candidates - target[:, None]) ** 2).sum(-1).argmin(1)
    return (dist.argmin(1) == truth).astype(np.float64)


def codebook_accuracy(pred: np.ndarray, codebook: np.ndarray, answers: np.ndarray, window: int = 8,
                      baseline: np.ndarray | None = None) -> np.ndarray:
    """1 where the codebook level nearest to the mean of the last ``window`` predicted steps (``pred [N, H, 1]``,
    minus ``baseline`` of the same shape where the level sits on a background, e.g. the forecast on the twin)
    is the answer (indices ``[N]`` into ``codebook [K]``); chance is 1 / K."""
    pred = np.asarray(pred, np.float64) - (0.0 if baseline is None else np.asarray(baseline, np.float64))
    level = pred.reshape(len(pred), -1)[:, -window:].mean(1)
    return (np.abs(level[:, None] - np.asarray(codebook)[None]).argmin(1) == np.asarray(answers)).astype(np.float64)


def cosine_similarity(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cosine of the angle between each flattened prediction and its target ``[N, ...]`` -> ``[N]`` (0 where
    either is zero)."""
    pred, target = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (pred, target))
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(target, axis=1)
    return np.where(norms > 0, (pred * target).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def effect_metrics(pred: np.ndarray, pred_ablated: np.ndarray, effect: np.ndarray,
                   onset_share: float = 0.25) -> dict[str, np.ndarray]:
    """How well the recalled effect of a needle matches the true one (probe B's action effect).

    The recalled effect is ``pred - pred_ablated`` (the forecast minus the same model's forecast on the twin).
    All inputs ``[N, H, C]``; returns per-example ``[N]`` arrays:

    - ``sign_accuracy``: 1 where the mean recalled effect has the true effect's sign;
    - ``magnitude_error``: ``|mean recalled - mean true| / |mean true|`` over the window;
    - ``onset_error``: steps between the first step where the true effect reaches ``onset_share`` of its
      largest size and the first step where the recalled one does (NaN where the recalled one never does).
    """
    recalled = (np.asarray(pred, np.float64) - np.asarray(pred_ablated, np.float64)).reshape(len(pred), -1)
    true = np.asarray(effect, np.float64).reshape(len(effect), -1)
    mean_true, mean_recalled = true.mean(1), recalled.mean(1)
    peak = np.abs(true).max(1, keepdims=True)
    true_onset = (np.abs(true) >= onset_share * peak).argmax(1)
    reached = np.sign(recalled) * np.sign(mean_true)[:, None] * np.abs(recalled) >= onset_share * peak
    recalled_onset = np.where(reached.any(1), reached.argmax(1), np.nan)
    return {"sign_accuracy": (np.sign(mean_recalled) == np.sign(mean_true)).astype(np.float64),
            "magnitude_error": np.abs(mean_recalled - mean_true) / np.maximum(np.abs(mean_true), 1e-12),
            "onset_error": np.abs(recalled_onset - true_onset)}
