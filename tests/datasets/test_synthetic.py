import time

import numpy as np
import pytest
from tsham.datasets import GENERATORS, synthetic_mix

from tsham.patch import ChannelRole


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_shapes_and_determinism(name):
    a = GENERATORS[name](300, np.random.default_rng(7))
    b = GENERATORS[name](300, np.random.default_rng(7))
    assert a.values.shape[0] == 300 and a.values.dtype == np.float32 and np.isfinite(a.values).all()
    assert a.flags.shape[0] == 300 and len(a.roles) == a.values.shape[1]
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.std() > 0


def test_delayed_action_effect_comes_after_the_action():
    s = GENERATORS["delayed_actions"](400, np.random.default_rng(1))
    assert s.roles == [ChannelRole.TARGET, ChannelRole.PAST_COVARIATE]
    np.testing.assert_array_equal(s.flags[:, 0], (s.values[:, 1] != 0).astype(np.float32))


def test_mix_is_seeded_fast_and_checks_names():
    start = time.perf_counter()
    mix = synthetic_mix(20, 1024, seed=3)
    assert time.perf_counter() - start < 10
    again = synthetic_mix(20, 1024, seed=3)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(mix, again, strict=True))
    with pytest.raises(ValueError, match="unknown generators"):
        synthetic_mix(2, 16, weights={"sines": 1.0})


def test_periodic_gp_has_its_kernel_and_exact_period():
    from tsham.datasets.synthetic import periodic_gp

    draws = np.stack([periodic_gp(40, 12.0, 1.0, np.random.default_rng(i)) for i in range(3000)])
    d = np.arange(40)
    kernel = np.exp(-2 * np.sin(np.pi * d / 12.0) ** 2)
    assert np.abs((draws[:, :1] * draws).mean(0) - kernel).max() < 0.08  # Monte-Carlo error of 3000 draws
    np.testing.assert_allclose(draws[:, 12:24], draws[:, :12], atol=1e-9)  # period 12 steps, not stretched


def test_synthetic_mix_same_series_whatever_the_workers():
    from tsham.datasets import synthetic_mix

    one = synthetic_mix(24, 256, seed=5, workers=1)
    two = synthetic_mix(24, 256, seed=5, workers=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a.values, b.values, atol=1e-6)


def test_mix_never_nests_a_pool_inside_a_worker(monkeypatch):
    # a benchmark cell runs in a worker process; a pool per cell multiplied the processes by the core count
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tsham.datasets.synthetic import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_workers(2000) == 8 and default_workers(100) == 1
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(default_workers, 2000).result() == 1


@pytest.mark.parametrize("length, channels", [(1, 1), (173, 3), (4128, 4)])
def test_seasonal_background_matches_its_formula(length, channels):
    """The shared sine tables and the [T, 4] x [4, C] product give PROBES.md's sines, draw for draw."""
    from scipy.signal import lfilter
    from tsham.datasets.synthetic import seasonal_ar_background

    fast = seasonal_ar_background(length, np.random.default_rng(7), channels)
    rng, t = np.random.default_rng(7), np.arange(length)[:, None]
    x = rng.uniform(0.5, 1, channels) * np.sin(2 * np.pi * t / 24 + rng.uniform(0, 2 * np.pi, channels))
    x = x + rng.uniform(0, 0.5, channels) * np.sin(2 * np.pi * t / 168 + rng.uniform(0, 2 * np.pi, channels))
    eps = rng.normal(0, 0.3, (length, channels))
    eps[0] = 0.0
    np.testing.assert_allclose(fast, x + lfilter([1.0], [1.0, -0.9], eps, axis=0), rtol=0, atol=1e-12)


def test_repeating_pattern_repeats_a_sharp_cycle():
    """Some lag p copies the series to a few % of its spread (what seasonal naive exploits), and the cycle is not
    a smooth sine: a one-step difference is often large."""
    from tsham.datasets.synthetic import repeating_pattern

    for seed in range(8):
        x = repeating_pattern(2048, np.random.default_rng(seed)).values[:, 0].astype(np.float64)
        lags = np.arange(2, 400)
        copy_error = np.array([np.abs(x[p:] - x[:-p]).mean() for p in lags]) / x.std()
        assert copy_error.min() < 0.2, (seed, lags[copy_error.argmin()], copy_error.min())
        assert np.abs(np.diff(x)).max() > 0.2 * x.std(), seed


def test_mix_refuses_a_length_or_weights_it_cannot_draw():
    with pytest.raises(ValueError, match="need length >= 16"):
        synthetic_mix(4, 3)
    for weights in ({"spikes": 0.0}, {"spikes": -1.0, "regime_switch": 2.0}):
        with pytest.raises(ValueError, match="weights must be >= 0 with a positive sum"):
            synthetic_mix(2, 64, weights=weights)
    assert all(len(s.values) == 16 for s in synthetic_mix(8, 16))


def test_structural_series_carry_a_calendar_season_on_a_wandering_level():
    """The differenced series correlates with itself one calendar period back (the season survives its drift and
    the noise) far more than a seasonless random walk plus noise does (median 0.02 there)."""
    from scipy.signal import lfilter
    from tsham.datasets.synthetic import CALENDARS, structural

    periods = sorted({p for p, _ in CALENDARS})

    def seasonal_autocorrelation(x: np.ndarray) -> float:
        d = np.diff(x) - np.diff(x).mean()
        return max(float(np.dot(d[p:], d[:-p]) / np.dot(d, d)) for p in periods)

    draws = [structural(2048, np.random.default_rng(seed)).values[:, 0] for seed in range(48)]
    assert np.median([seasonal_autocorrelation(x) for x in draws]) > 0.4
    rng = np.random.default_rng(0)
    seasonless = [lfilter([1.0], [1.0, -0.99], rng.normal(size=2048)) + rng.normal(size=2048) for _ in range(16)]
    assert np.median([seasonal_autocorrelation(x) for x in seasonless]) < 0.1


def test_structural_noise_that_follows_the_clock_stays_within_a_factor_of_ten_or_so():
    """A one-step schedule as the noise's log-scale peaks at sqrt(period) std: unclipped, one hour of the day got
    noise 10^4 times louder, and the largest step of some series was 4000 times its median step."""
    from tsham.datasets.synthetic import structural

    ratios = []
    for seed in range(300):  # pretraining's length; unclipped, one of these 300 reached 4095
        x = structural(4096, np.random.default_rng([5, seed])).values[:, 0]
        step = np.abs(np.diff(x))
        ratios.append(step.max() / np.median(step))
    assert max(ratios) < 1000
