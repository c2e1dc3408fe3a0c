"""Seeded probe generators (../shared/PROBES.md): each returns a batch and its needle-ablated twin.

A probe example has observed channels, optional flag channels, a query window whose target the model must
forecast, and needle positions (what the memory must keep; an oracle router routes exactly these). The twin is
the same example (same seed) with the needle removed, so ``RS = 1 - MSE(pred) / MSE(pred on twin)`` measures
what the memory recalled, not general forecasting skill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tsham.datasets.synthetic import seasonal_ar_background

LEVELS = ("easy", "medium", "hard")


@dataclass
class ProbeBatch:
    """N examples of one probe (arrays, float32 unless stated).

    Attributes:
        context: observed channels up to the query ``[N, L, C]``. flags: ``[N, L + H, F]`` (known ahead).
        target: what to forecast ``[N, H, Ct]``; target_channels: which context channels it continues.
        needles: bool ``[N, L]``, the steps the memory must keep.
        twin_context: the context with the needle removed ``[N, L, C]``; twin_flags likewise.
    """

    context: np.ndarray
    flags: np.ndarray
    target: np.ndarray
    target_channels: list[int]
    needles: np.ndarray
    twin_context: np.ndarray
    twin_flags: np.ndarray


def background(length: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """The default background ``[T, C]`` (:func:`seasonal_ar_background`), normalised per channel, float32."""
    x = seasonal_ar_background(length, rng, channels)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def _rngs(seed: int, n: int):
    return [np.random.default_rng([seed, i]) for i in range(n)]


def delayed_action(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe B: an action's effect appears on channel 1 after a transport delay; 8 distractor actions pulse
    channel 2 at once. The context ends 16 steps before the delayed onset; forecast channel 1 for 80 steps.
    Channels: 3 observed + the action channel u (also flag 0, set where u != 0). Twin: u(t0) zeroed."""
    delay = {"easy": 64, "medium": 256, "hard": 1024}[level]
    H, L = 80, delay + 512
    out = {k: [] for k in ("ctx", "twin", "flags", "twin_flags", "target", "needles")}
    for rng in _rngs(seed, n):
        x = background(L + H, 3, rng)
        u = np.zeros(L + H, np.float32)
        t0 = L + 16 - delay  # the onset t0 + delay lands 16 steps after the context ends
        for t in rng.choice(np.arange(0, L - 8), 8, replace=False):  # distractors with immediate pulses
            if abs(t - t0) > 8:
                u[t] = rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
                x[t:t + 5, 2] += 3 * u[t]
        a = rng.choice([-1, 1]) * rng.uniform(0.5, 2)
        t = np.arange(L + H) - t0 - delay
        effect = np.where(t >= 0, 1.5 * a * (1 - np.exp(-np.maximum(t, 0) / 16)), 0.0).astype(np.float32)
        twin_u = u.copy()
        u[t0] = a
        full, twin_full = np.column_stack([x[:, 0], x[:, 1] + effect, x[:, 2], u]), np.column_stack([*x.T, twin_u])
        out["ctx"].append(full[:L])
        out["twin"].append(twin_full[:L])
        out["flags"].append((u != 0).astype(np.float32)[:, None])
        out["twin_flags"].append((twin_u != 0).astype(np.float32)[:, None])
        out["target"].append(full[L:, 1:2])
        needles = np.zeros(L, bool)
        needles[t0] = True
        out["needles"].append(needles)
    return ProbeBatch(*(np.stack(out[k]) for k in ("ctx", "flags", "target")), [1], np.stack(out["needles"]),
                      np.stack(out["twin"]), np.stack(out["twin_flags"]))


def scheduled_event(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe D: channel 0 is a slow random walk; flag 0 marks snapshots every 512 steps (nothing happens there),
    flag 1 a reset at which channel 0 jumps back to its level at the k-th most recent snapshot. Forecast 32 steps
    from the reset. Twin: the flag of that snapshot removed (the series is the same: only the memory cue goes)."""
    k = {"easy": 1, "medium": 2, "hard": 4}[level]
    period, H = 512, 32
    L = period * (k + 1) + 64
    out = {k_: [] for k_ in ("ctx", "flags", "twin_flags", "target", "needles")}
    for rng in _rngs(seed, n):
        walk = np.cumsum(rng.normal(0, 0.05, L + H)).astype(np.float32)
        snaps = np.arange(rng.integers(0, period // 2), L, period)
        snap = snaps[-k]  # the k-th most recent snapshot before the reset
        walk[L:] = walk[snap] + np.cumsum(rng.normal(0, 0.05, H))  # reset at the context's end
        x = (walk + rng.normal(0, 0.02, L + H)).astype(np.float32)
        flags = np.zeros((L + H, 2), np.float32)
        flags[snaps, 0] = 1.0
        flags[L, 1] = 1.0
        twin_flags = flags.copy()
        twin_flags[snap, 0] = 0.0
        out["ctx"].append(x[:L, None])
        out["flags"].append(flags)
        out["twin_flags"].append(twin_flags)
        out["target"].append(x[L:, None])
        needles = np.zeros(L, bool)
        needles[snap] = True
        out["needles"].append(needles)
    ctx = np.stack(out["ctx"])
    return ProbeBatch(ctx, np.stack(out["flags"]), np.stack(out["target"]), [0], np.stack(out["needles"]), ctx.copy(),
                      np.stack(out["twin_flags"]))


def mqar(n: int, level: str = "easy", seed: int = 0, d: int = 8) -> ProbeBatch:
    """Probe E: continuous multivariate MQAR. Channels ``[key (d) | value (d) | kv-marker | query-marker]``;
    N pairs in the first half (keys on the sphere scaled by sqrt(d)), AR filler of matched scale elsewhere; at the
    end one key is presented (query marker on) and the model outputs its value (target ``[N, 1, d]``).
    Twin: the queried pair replaced by filler."""
    pairs = {"easy": 4, "medium": 16, "hard": 64}[level]
    L = 8 * pairs + 64
    out = {k: [] for k in ("ctx", "twin", "target", "needles")}
    for rng in _rngs(seed, n):
        filler = background(L, 2 * d, rng) * 0.5
        x = np.zeros((L, 2 * d + 2), np.float32)
        x[:, : 2 * d] = filler
        keys = rng.normal(size=(pairs, d))
        keys = keys / np.linalg.norm(keys, axis=1, keepdims=True) * np.sqrt(d)
        values = rng.normal(size=(pairs, d)).astype(np.float32)
        steps = np.sort(rng.choice(np.arange(L // 2), pairs, replace=False))
        x[steps, :d], x[steps, d:2 * d], x[steps, 2 * d] = keys, values, 1.0
        q = int(rng.integers(pairs))
        twin = x.copy()
        twin[steps[q], : 2 * d], twin[steps[q], 2 * d] = filler[steps[q]], 0.0
        for arr in (x, twin):  # the query: the key, the query marker, and no value
            arr[L - 1, :d], arr[L - 1, d:2 * d], arr[L - 1, 2 * d], arr[L - 1, 2 * d + 1] = keys[q], 0.0, 0.0, 1.0
        out["ctx"].append(x)
        out["twin"].append(twin)
        out["target"].append(values[q][None])
        needles = np.zeros(L, bool)
        needles[steps[q]] = True
        out["needles"].append(needles)
    empty = np.zeros((n, L + 1, 0), np.float32)
    return ProbeBatch(np.stack(out["ctx"]), empty, np.stack(out["target"]), list(range(d, 2 * d)),
                      np.stack(out["needles"]), np.stack(out["twin"]), empty)


PROBES = {"delayed_action": delayed_action, "scheduled_event": scheduled_event, "mqar": mqar}
