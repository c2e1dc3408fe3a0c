"""Context / horizon training windows with GluonTS field names."""

from __future__ import annotations

import numpy as np
import torch


def sample_windows(
    series: list[np.ndarray],
    context_length: int,
    horizon: int,
    num_windows: int,
    rng: np.random.Generator,
    min_past: int = 1,
    tail: int | None = None,
) -> dict[str, torch.Tensor]:
    """Draws training windows uniformly over series and cut points.

    Each series is ``[T, C]`` (or ``[T]``, one channel), NaN for missing values; every series must have the
    same C. A cut point t leaves at least ``min_past`` observed-or-not steps before it and a full horizon after
    it; a past shorter than ``context_length`` is left-padded as missing. With ``tail``, only cut points whose
    whole horizon lies in each series' last ``tail`` steps (a validation split; the past may reach before it).

    Returns:
        ``past_target`` ``[N, context_length, C]``, ``past_observed_values`` (same, float 0/1),
        ``future_target`` ``[N, horizon, C]``, ``future_observed_values`` (same); NaN replaced by 0.
    """
    if context_length <= 0 or horizon <= 0:
        raise ValueError(f"context_length and horizon must be positive; got {context_length}, {horizon}")
    if tail is not None and tail < horizon:
        raise ValueError(f"tail={tail} is shorter than the horizon {horizon}: no window fits in it")
    arrays = [np.asarray(s, dtype=np.float32).reshape(len(s), -1) for s in series]
    lowest = [max(min_past, len(a) - tail if tail is not None else 0) for a in arrays]  # first cut point
    usable = [i for i, a in enumerate(arrays) if len(a) >= lowest[i] + horizon]
    if not usable:
        raise ValueError(f"no series is long enough for min_past={min_past} + horizon={horizon} steps "
                         f"(longest: {max((len(a) for a in arrays), default=0)})")
    channels = {arrays[i].shape[1] for i in usable}
    if len(channels) != 1:
        raise ValueError(f"all series must have the same number of channels; got {sorted(channels)}")
    C = channels.pop()
    past = np.full((num_windows, context_length, C), np.nan, dtype=np.float32)
    future = np.empty((num_windows, horizon, C), dtype=np.float32)
    for n in range(num_windows):
        i = usable[rng.integers(len(usable))]
        a = arrays[i]
        cut = int(rng.integers(lowest[i], len(a) - horizon + 1))
        context = a[max(0, cut - context_length):cut]
        past[n, context_length - len(context):] = context
        future[n] = a[cut:cut + horizon]
    out = {}
    for name, block in (("past", past), ("future", future)):
        observed = ~np.isnan(block)
        out[f"{name}_target"] = torch.from_numpy(np.where(observed, block, 0.0).astype(np.float32))
        out[f"{name}_observed_values"] = torch.from_numpy(observed.astype(np.float32))
    return out
