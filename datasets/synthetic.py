"""Seeded, fast synthetic series for pretraining: KernelSynth-style GP draws and structured events.

Every generator takes ``(length, rng)`` and returns a :class:`SyntheticSeries` (values ``[T, C]``, event flags
``[T, F]``, roles of the value channels). ``synthetic_mix`` draws from all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tsham.patch import ChannelRole


@dataclass
class SyntheticSeries:
    """values ``[T, C]`` (float32), flags ``[T, F]`` (0/1, F may be 0), roles of the C value channels."""

    values: np.ndarray
    flags: np.ndarray
    roles: list[ChannelRole]


def _no_flags(length: int) -> np.ndarray:
    return np.zeros((length, 0), dtype=np.float32)


# -- KernelSynth: a GP sample with a random composition of kernels (Chronos, Ansari et al. 2024) ------------------
PERIODS = (4, 7, 12, 24, 48, 52, 96, 168, 365)


def _kernel_bank(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = t[:, None] - t[None, :]
    kind = rng.integers(5)
    if kind == 0:  # smooth trend-like (RBF)
        ls = rng.choice([0.05, 0.1, 0.3, 1.0])
        return np.exp(-0.5 * (d / ls) ** 2)
    if kind == 1:  # seasonality
        period = rng.choice(PERIODS) / len(t)
        return np.exp(-2 * np.sin(np.pi * np.abs(d) / period) ** 2 / rng.choice([0.5, 1.0, 2.0]) ** 2)
    if kind == 2:  # linear trend
        return (t[:, None] - rng.uniform(-0.5, 1.5)) * (t[None, :] - rng.uniform(-0.5, 1.5))
    if kind == 3:  # rough (rational quadratic)
        alpha, ls = rng.choice([0.1, 1.0, 10.0]), rng.choice([0.01, 0.05, 0.2])
        return (1 + d**2 / (2 * alpha * ls**2)) ** -alpha
    return np.eye(len(t)) * rng.uniform(0.01, 0.1)  # white noise


def kernel_synth(length: int, rng: np.random.Generator, max_kernels: int = 4, grid: int = 256) -> SyntheticSeries:
    """One GP draw on ``grid`` points (cost O(grid^3), independent of length), linearly interpolated."""
    t = np.linspace(0, 1, grid)
    K = _kernel_bank(t, rng)
    for _ in range(rng.integers(0, max_kernels)):
        K = K + _kernel_bank(t, rng) if rng.random() < 0.5 else K * _kernel_bank(t, rng)
    w, V = np.linalg.eigh((K + K.T) / 2)  # eigh, not Cholesky: smooth kernels are numerically rank-deficient
    draw = V @ (np.sqrt(np.clip(w, 0, None)) * rng.standard_normal(grid))
    values = np.interp(np.linspace(0, 1, length), t, draw)
    return SyntheticSeries(values[:, None].astype(np.float32), _no_flags(length), [ChannelRole.TARGET])


# -- structured generators -------------------------------------------------------------------------------------
def seasonal_ar_background(length: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """PROBES.md's default background ``[T, C]``: two seasonal sines (periods 24 and 168, random phases,
    amplitudes U(0.5, 1) and U(0, 0.5)) plus AR(1) noise (phi 0.9, sigma 0.3); not normalised."""
    t = np.arange(length)[:, None]
    x = rng.uniform(0.5, 1, channels) * np.sin(2 * np.pi * t / 24 + rng.uniform(0, 2 * np.pi, channels))
    x = x + rng.uniform(0, 0.5, channels) * np.sin(2 * np.pi * t / 168 + rng.uniform(0, 2 * np.pi, channels))
    eps = rng.normal(0, 0.3, (length, channels))
    noise = np.zeros((length, channels))
    for i in range(1, length):
        noise[i] = 0.9 * noise[i - 1] + eps[i]
    return x + noise


def _background(length: int, rng: np.random.Generator) -> np.ndarray:
    return seasonal_ar_background(length, rng)[:, 0]


def regime_switch(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """Piecewise regimes with different level, scale and seasonality strength."""
    base = _background(length, rng)
    cuts = np.sort(rng.choice(np.arange(1, length), size=rng.integers(1, 5), replace=False))
    level, scale = np.zeros(length), np.ones(length)
    for start in cuts:
        level[start:] = rng.normal(0, 2)
        scale[start:] = rng.uniform(0.3, 2.0)
    return SyntheticSeries((level + scale * base)[:, None].astype(np.float32), _no_flags(length),
                           [ChannelRole.TARGET])


def spikes(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """Background with rare isolated spikes."""
    x = _background(length, rng)
    where = rng.random(length) < rng.uniform(0.002, 0.02)
    x[where] += rng.choice([-1, 1], where.sum()) * rng.uniform(3, 8, where.sum())
    return SyntheticSeries(x[:, None].astype(np.float32), _no_flags(length), [ChannelRole.TARGET])


def delayed_actions(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """An action channel whose effect reaches the target after a transport delay (flag = action applied)."""
    x = _background(length, rng)
    action = np.zeros(length)
    delay = int(rng.integers(8, 64))
    for t0 in rng.choice(length, size=rng.integers(1, 6), replace=False):
        a = rng.choice([-1, 1]) * rng.uniform(0.5, 2)
        action[t0] = a
        t = np.arange(length) - t0 - delay
        x += np.where(t >= 0, 1.5 * a * (1 - np.exp(-np.maximum(t, 0) / 16)), 0.0)
    values = np.stack([x, action], -1).astype(np.float32)
    return SyntheticSeries(values, (action != 0).astype(np.float32)[:, None],
                           [ChannelRole.TARGET, ChannelRole.PAST_COVARIATE])


def scheduled_events(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """A known-future schedule (flag) at which the target makes a step of known sign."""
    x = _background(length, rng)
    period = int(rng.choice([48, 96, 168]))
    flag = np.zeros(length, dtype=np.float32)
    flag[rng.integers(period)::period] = 1.0
    step = rng.choice([-1, 1]) * rng.uniform(1, 3) * 4 / max(flag.sum(), 1)  # total drift of 4-12 std
    x += step * np.cumsum(flag)
    return SyntheticSeries(x[:, None].astype(np.float32), flag[:, None], [ChannelRole.TARGET])


def coupled(length: int, rng: np.random.Generator, channels: int | None = None) -> SyntheticSeries:
    """Channels driven by a shared latent factor with per-channel lags and loadings."""
    C = int(channels or rng.integers(2, 6))
    latent = _background(length + 32, rng)
    rows = []
    for _ in range(C):
        lag = int(rng.integers(0, 32))
        rows.append(rng.uniform(0.5, 1.5) * latent[32 - lag:32 - lag + length] + rng.normal(0, 0.2, length))
    return SyntheticSeries(np.stack(rows, -1).astype(np.float32), _no_flags(length), [ChannelRole.TARGET] * C)


GENERATORS: dict[str, Callable[[int, np.random.Generator], SyntheticSeries]] = {
    "kernel_synth": kernel_synth,
    "regime_switch": regime_switch,
    "spikes": spikes,
    "delayed_actions": delayed_actions,
    "scheduled_events": scheduled_events,
    "coupled": coupled,
}


def synthetic_mix(count: int, length: int, seed: int = 0, weights: dict[str, float] | None = None):
    """``count`` series drawn from the generators (weights by name; uniform by default), deterministic per seed."""
    rng = np.random.default_rng(seed)
    weights = weights or {name: 1.0 for name in GENERATORS}
    unknown = set(weights) - set(GENERATORS)
    if unknown:
        raise ValueError(f"unknown generators {sorted(unknown)}; known: {sorted(GENERATORS)}")
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return [GENERATORS[names[i]](length, rng) for i in rng.choice(len(names), size=count, p=p / p.sum())]
