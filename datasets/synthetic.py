"""Seeded, fast synthetic series for pretraining: KernelSynth-style GP draws and structured events.

Every generator takes ``(length, rng)`` and returns a :class:`SyntheticSeries` (values ``[T, C]``, event flags
``[T, F]``, roles of the value channels). ``synthetic_mix`` draws from all of them.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
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
PERIODS = (4, 7, 12, 24, 48, 52, 96, 168, 365)  # in steps: the calendar periods of sub-daily to yearly data


def _kernel_bank(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-periodic kernel on the coarse grid ``t`` (seasonality is drawn exactly, see below)."""
    d = t[:, None] - t[None, :]
    kind = rng.integers(4)
    if kind == 0:  # smooth trend-like (RBF)
        ls = rng.choice([0.05, 0.1, 0.3, 1.0])
        return np.exp(-0.5 * (d / ls) ** 2)
    if kind == 1:  # linear trend
        c = rng.uniform(-0.5, 1.5)  # one offset on both sides: (t - c)(t' - c) is positive semi-definite
        return (t[:, None] - c) * (t[None, :] - c)
    if kind == 2:  # rough (rational quadratic)
        alpha, ls = rng.choice([0.1, 1.0, 10.0]), rng.choice([0.01, 0.05, 0.2])
        return (1 + d**2 / (2 * alpha * ls**2)) ** -alpha
    return np.eye(len(t)) * rng.uniform(0.01, 0.1)  # white noise


def periodic_gp(length: int, period: float, lengthscale: float, rng: np.random.Generator,
                harmonics: int = 24) -> np.ndarray:
    """An exact draw ``[length]`` of the zero-mean GP with kernel ``exp(-2 sin^2(pi d / period) / l^2)``.

    That kernel equals ``sum_k e^-z I_k(z) cos(k w d)`` (z = 1 / l^2, w = 2 pi / period), so the draw is a
    Fourier series whose k-th harmonic has variance ``e^-z I_k(z)`` (doubled for k >= 1): exact at any
    period, where a GP on a coarse grid, interpolated, stretches short periods by length / grid.
    """
    from scipy.special import ive  # scipy comes with statsmodels

    z = 1.0 / lengthscale**2
    k = np.arange(harmonics + 1)
    std = np.sqrt(ive(k, z) * np.where(k == 0, 1.0, 2.0))
    phase = 2 * np.pi * np.arange(length)[:, None] * k[None, 1:] / period
    a, b = rng.standard_normal(harmonics + 1), rng.standard_normal(harmonics)
    return std[0] * a[0] + (np.cos(phase) * (std[1:] * a[1:]) + np.sin(phase) * (std[1:] * b)).sum(-1)


def kernel_synth(length: int, rng: np.random.Generator, max_kernels: int = 4, grid: int = 256) -> SyntheticSeries:
    """A KernelSynth series: a non-periodic GP draw on ``grid`` points (cost O(grid^3), independent of length),
    linearly interpolated, plus (usually) one or two exact periodic draws at calendar periods, added or
    modulating the amplitude (the locally periodic products of KernelSynth)."""
    t = np.linspace(0, 1, grid)
    K = _kernel_bank(t, rng)
    for _ in range(rng.integers(0, max_kernels)):
        K = K + _kernel_bank(t, rng) if rng.random() < 0.5 else K * _kernel_bank(t, rng)
    # Cholesky with jitter: smooth kernels are numerically rank-deficient, and an eigendecomposition's basis of
    # near-equal eigenvalues (so the draw) would change with the BLAS thread count, breaking determinism
    K = (K + K.T) / 2
    jitter = 1e-6 * max(float(np.diag(K).mean()), 1e-12)
    for _ in range(8):
        try:
            L = np.linalg.cholesky(K + jitter * np.eye(grid))
            break
        except np.linalg.LinAlgError:
            jitter *= 10
    else:
        raise ValueError("kernel_synth: the composed kernel is not positive semi-definite")
    draw = L @ rng.standard_normal(grid)
    values = np.interp(np.linspace(0, 1, length), t, draw)
    scale = max(float(values.std()), 1e-3)
    for _ in range(rng.choice([0, 1, 1, 2])):
        period = float(rng.choice(PERIODS)) * (1.0 if rng.random() < 0.8 else rng.uniform(0.5, 2.0))
        season = periodic_gp(length, period, float(rng.choice([0.5, 1.0, 2.0])), rng)
        season *= rng.uniform(0.3, 3.0) * scale / max(float(season.std()), 1e-6)
        if rng.random() < 0.3:  # amplitude modulated by a slow positive envelope
            envelope = np.interp(np.linspace(0, 1, length), t, draw)
            season *= 1.0 + 0.5 * np.tanh((envelope - envelope.mean()) / scale)
        values = values + season
    return SyntheticSeries(values[:, None].astype(np.float32), _no_flags(length), [ChannelRole.TARGET])


# -- structured generators -------------------------------------------------------------------------------------
def seasonal_ar_background(length: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """PROBES.md's default background ``[T, C]``: two seasonal sines (periods 24 and 168, random phases,
    amplitudes U(0.5, 1) and U(0, 0.5)) plus AR(1) noise (phi 0.9, sigma 0.3); not normalised."""
    a1, p1 = rng.uniform(0.5, 1, channels), rng.uniform(0, 2 * np.pi, channels)
    a2, p2 = rng.uniform(0, 0.5, channels), rng.uniform(0, 2 * np.pi, channels)
    # sin(wt + p) = sin(wt) cos(p) + cos(wt) sin(p): one [T, 4] x [4, C] product with sine tables shared by every
    # call of a length, not T x C sines (the probe generators draw 64 of these per batch, on the host that also
    # feeds the GPU)
    x = _season_tables(length) @ np.stack([a1 * np.cos(p1), a1 * np.sin(p1), a2 * np.cos(p2), a2 * np.sin(p2)])
    from scipy.signal import lfilter  # the AR(1) recursion in C; scipy comes with statsmodels

    eps = rng.normal(0, 0.3, (length, channels))
    eps[0] = 0.0  # the recursion starts from noise 0
    return x + lfilter([1.0], [1.0, -0.9], eps, axis=0)


@functools.lru_cache(maxsize=16)
def _season_tables(length: int) -> np.ndarray:
    """``[T, 4]``: sin and cos of the periods 24 and 168 over ``length`` steps (read-only: shared)."""
    phase = 2 * np.pi * np.arange(length)[:, None] / np.array([24.0, 24.0, 168.0, 168.0])
    tables = np.where(np.arange(4) % 2 == 0, np.sin(phase), np.cos(phase))
    tables.flags.writeable = False
    return tables


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


def _cycle_shape(period: int, rng: np.random.Generator) -> np.ndarray:
    """One cycle ``[period]`` with the sharp features of real schedules, zero mean, unit std: a random walk
    (jagged), an on/off schedule (opening hours: steps) or a few harmonics (peaks), sometimes mixed."""
    kinds = rng.choice(3, size=rng.integers(1, 3), replace=False)
    shape = np.zeros(period)
    for kind in kinds:
        if kind == 0:
            part = np.cumsum(rng.normal(0, 1, period))
            part -= np.linspace(0, part[-1] - part[0], period)  # closes the cycle: no jump at the wrap
        elif kind == 1:
            on, width = rng.integers(period), rng.integers(1, max(2, period // 2) + 1)
            part = np.zeros(period)
            part[(on + np.arange(width)) % period] = 1.0
        else:
            k = np.arange(1, rng.integers(2, max(3, period // 2) + 1))
            t = np.arange(period)[:, None] / period
            part = (rng.normal(size=len(k)) / k * np.sin(2 * np.pi * k * t + rng.uniform(0, 2 * np.pi, len(k)))).sum(1)
        shape += rng.uniform(0.3, 1.0) * (part - part.mean()) / max(part.std(), 1e-6)
    return (shape - shape.mean()) / max(shape.std(), 1e-6)


def repeating_pattern(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """A cycle that repeats exactly (up to small noise): a jagged or stepped shape of a calendar period (a week of
    hourly data is a daily shape times a weekday profile), on a slowly drifting level and amplitude. Teaches
    copying: M4 hourly holds many such series, where seasonal naive is near-perfect and a forecaster that smooths
    the cycle is far worse (MASE 2.26 against 1.19 before this generator joined the mix)."""
    period = int(rng.choice([24, 24, 168, 168, 7, 12, 48, 96, 52, int(rng.integers(5, 200))]))
    if period == 168 and rng.random() < 0.7:  # a daily shape, scaled per weekday (weekends differ)
        week = 1.0 + rng.uniform(0, 0.6) * np.where(np.arange(7) >= 5, -1.0, rng.uniform(-0.3, 0.3, 7))
        cycle = (np.tile(_cycle_shape(24, rng), 7) * np.repeat(week, 24)) + np.repeat(rng.normal(0, 0.3, 7), 24)
    else:
        cycle = _cycle_shape(period, rng)
    x = np.tile(cycle, length // len(cycle) + 2)[rng.integers(len(cycle)):][:length]  # a random phase
    t = np.linspace(0, 1, length)
    amplitude = 1.0 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t + rng.uniform(0, 2 * np.pi))
    drift = np.cumsum(rng.normal(0, rng.uniform(0, 0.02), length)) + rng.normal(0, 0.5) * t
    noise = rng.normal(0, 10 ** rng.uniform(-3, -0.7), length)
    values = rng.uniform(-5, 30) + rng.uniform(0.5, 5) * (amplitude * x + drift + noise)
    return SyntheticSeries(values[:, None].astype(np.float32), _no_flags(length), [ChannelRole.TARGET])


# calendar periods with the longer period each sits inside: (steps per day-like cycle, steps per week-like cycle)
CALENDARS = ((24, 168), (24, 168), (48, 336), (96, 672), (7, 364), (12, 0), (52, 0), (4, 0))


def structural(length: int, rng: np.random.Generator) -> SyntheticSeries:
    """A basic structural model (Harvey): a stochastic level plus a calendar season whose amplitude and shape drift,
    plus autocorrelated noise whose strength may follow the season, optionally multiplicative. The other
    generators draw their season exactly or as a stationary GP; sensor and load series instead wander (a persistent
    level a forecast must track, a season that changes slowly) under noise of any strength, so the best forecast
    blends recent values with the season and widens its quantiles with the horizon (and with the hour)."""
    from scipy.signal import lfilter  # the recursions in C; scipy comes with statsmodels

    period, outer = CALENDARS[rng.integers(len(CALENDARS))]
    smooth = rng.random() < 0.5  # a smooth daily curve (temperature-like) or a sharp schedule (load-like)
    shape = periodic_gp(period, period, rng.uniform(0.5, 1.5), rng) if smooth else _cycle_shape(period, rng)
    shape = (shape - shape.mean()) / max(shape.std(), 1e-6)
    drift = rng.uniform(0, 0.3)  # the shape moves towards a second one and back over the series
    other = _cycle_shape(period, rng)
    mix = drift * (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(0.2, 2) * np.linspace(0, 1, length)))
    phase = rng.integers(period)
    index = (np.arange(length) + phase) % period
    season = (1 - mix) * shape[index] + mix * other[index]
    if outer and rng.random() < 0.7:  # weekday profile / yearly swing of the inner cycle's scale and level
        days = outer // period
        day = (np.arange(length) + phase) // period % days

        def profile() -> np.ndarray:  # weekdays differ freely; the 52 weeks of a year swing smoothly
            return rng.standard_normal(days) if days <= 7 else periodic_gp(days, days, 0.7, rng)

        scale = np.maximum(1 + rng.uniform(0, 0.5) * profile(), 0.1)  # never flips the season's sign
        season = season * scale[day] + rng.uniform(0, 0.5) * profile()[day]
    log_amp = lfilter([1.0], [1.0, -0.999], rng.normal(0, rng.uniform(0, 0.02), length))
    season = season * np.exp(log_amp)
    phi_level = rng.choice([1.0, rng.uniform(0.95, 0.999)])  # random walk or a slowly mean-reverting level
    level = lfilter([1.0], [1.0, -phi_level], rng.normal(0, 10 ** rng.uniform(-2.5, -0.7), length))
    level += rng.normal(0, 0.5) * np.linspace(0, 1, length)  # a trend
    noise = lfilter([1.0], [1.0, -rng.uniform(0, 0.9)], rng.normal(0, 10 ** rng.uniform(-1.5, 0), length))
    if rng.random() < 0.5:  # noise that follows the clock too (a load is steady at night, volatile at 8 am)
        # a unit-std cycle shape as the log-scale, clipped: a one-step schedule peaks at sqrt(period) std, which
        # made a noise 10^4 times louder at one hour of the day (review of rev 442be23)
        noise = noise * np.exp(rng.uniform(0.3, 1.2) * np.clip(_cycle_shape(period, rng), -2, 2))[index]
    x = rng.uniform(0.1, 1.5) * season + level + noise
    if rng.random() < 0.3:  # multiplicative: noise and season scale with the level
        x = np.exp(0.3 * (x - x.mean()) / max(x.std(), 1e-6))
    values = rng.uniform(-5, 30) + rng.uniform(0.5, 5) * x
    return SyntheticSeries(values[:, None].astype(np.float32), _no_flags(length), [ChannelRole.TARGET])


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
    "repeating_pattern": repeating_pattern,
    "structural": structural,
}


def _draw(job: tuple[str, int, np.random.SeedSequence]) -> SyntheticSeries:
    name, length, seed = job
    return GENERATORS[name](length, np.random.default_rng(seed))


def default_workers(count: int) -> int:
    """Processes :func:`synthetic_mix` draws ``count`` series with by default: every CPU (up to 32) for 512 series
    or more, else 1, and always 1 inside a worker process."""
    # never nested: inside a worker the caller's pool already fills the cores, and each spawned child imports torch
    # (~250 MB), so 40 routing-benchmark cells each spawning 32 children asked a 32-core, 256 GB device for 1,280
    # processes and stalled a whole call (2026-11-30)
    if count < 512 or multiprocessing.parent_process() is not None:
        return 1
    return min(os.cpu_count() or 1, 32)


MIN_LENGTH = 16  # a patch; regime_switch and delayed_actions draw up to 5 distinct steps


def synthetic_mix(count: int, length: int, seed: int = 0, weights: dict[str, float] | None = None,
                  workers: int | None = None) -> list[SyntheticSeries]:
    """``count`` series of ``length`` steps (at least ``MIN_LENGTH``) drawn from the generators (weights by name,
    >= 0; uniform over :data:`GENERATORS` by default, so an unweighted mix changes when a generator joins:
    ``repeating_pattern`` and ``structural`` did on 2026-12-01; pass weights to pin one), the same per seed
    whatever the number of ``workers`` up to float rounding (~1e-7: BLAS runs with one thread in a worker and
    with several in this process; each series has its own seed).
    Default workers: every CPU, up to 32, for 512 series or more, and 1 inside a worker process."""
    if length < MIN_LENGTH or count < 0:
        raise ValueError(f"synthetic_mix: need length >= {MIN_LENGTH} steps and count >= 0; got length {length}, "
                         f"count {count}")
    rng = np.random.default_rng(seed)
    weights = {name: 1.0 for name in GENERATORS} if weights is None else weights
    unknown = set(weights) - set(GENERATORS)
    if unknown:
        raise ValueError(f"unknown generators {sorted(unknown)}; known: {sorted(GENERATORS)}")
    if not all(np.isfinite(w) and w >= 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"synthetic_mix: weights must be >= 0 with a positive sum; got {weights}")
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    picks = rng.choice(len(names), size=count, p=p / p.sum())
    jobs = [(names[i], length, s) for i, s in zip(picks, np.random.SeedSequence(seed).spawn(count), strict=True)]
    workers = workers or default_workers(count)
    if workers == 1:
        return [_draw(job) for job in jobs]
    # one BLAS thread per process: KernelSynth's Cholesky would otherwise oversubscribe the cores many times over
    with one_blas_thread(), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_draw, jobs, chunksize=max(1, count // (4 * workers))))


@contextmanager
def one_blas_thread():
    """Processes spawned inside this block use one BLAS / OpenMP thread each (they read these variables when they
    import numpy); the caller's environment is put back on exit. For pools of many processes: each process's
    default of one BLAS thread per core oversubscribes the machine many times over (48 routing cells drawing
    KernelSynth series with 32 threads each stalled a device call, 2026-11-30)."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(dict.fromkeys(saved, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
