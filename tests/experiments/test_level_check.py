import numpy as np
import pytest


def test_the_split_is_exact_and_puts_a_shifted_forecast_in_level():
    from tsham.experiments.level_check import split

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(5, 48, 3))
    forecast = rng.normal(size=(5, 48, 3))
    parts = split(forecast, truth)
    assert parts["MSE"] == pytest.approx(parts["level"] + parts["shape"])
    shifted = split(truth + 0.5, truth)  # right shape, wrong level
    assert shifted["level"] == pytest.approx(0.25) and shifted["shape"] == pytest.approx(0.0, abs=1e-12)


def test_windows_are_the_protocols_and_day_means_read_the_last_days():
    from tsham.experiments.level_check import DAYS, day_means, windows
    from tsham.experiments.ltsf import TEST_END, TEST_START

    series = np.arange(TEST_END, dtype=np.float64)[:, None]
    context, truth = windows(series, TEST_START, TEST_END, 2048, 96, 1)
    assert len(context) == TEST_END - TEST_START - 96 + 1
    assert truth[0, 0, 0] == TEST_START and context[0, -1, 0] == TEST_START - 1 and truth[-1, -1, 0] == TEST_END - 1
    means = day_means(context[:1])
    last = TEST_START - 1
    assert means[0, 0, 0] == pytest.approx(last - 11.5)  # the mean of the last 24 steps
    assert means[0, 0, -1] == pytest.approx(last - (24 * DAYS[-1] - 1) / 2)


def test_scaled_level_errors_are_in_context_std_units():
    from tsham.experiments.level_check import DAYS, scaled_level_errors

    rng = np.random.default_rng(1)
    context = rng.normal(size=(3, 24 * max(DAYS), 2))
    context[:, -24:] += 5.0  # the last day sits 5 above the rest
    truth = np.zeros((3, 48, 2)) + context[:, -24:].mean(1, keepdims=True)  # the future stays at the last day's mean
    errors = scaled_level_errors(context, truth)
    assert errors.shape == (6, len(DAYS))
    np.testing.assert_allclose(errors[:, 0], 0.0, atol=1e-20)  # the last day's mean is right
    expected = ((context[:, -72:].mean(1) - truth.mean(1)) / context.std(1)) ** 2
    np.testing.assert_allclose(errors[:, 1], expected.reshape(-1))  # 3 days, scaled by the context's std


def test_mix_rows_cover_every_generator_of_the_shipped_mix_and_the_ett_splits():
    from tsham.experiments.level_check import DAYS, SHIPPED_MIX, mix_rows

    rows = mix_rows(count=len(SHIPPED_MIX) * 2, seed=0, lookback=2048, horizon=96, stride=500)
    labels = [r["series"] for r in rows]
    assert labels == [*(f"mix: {n}" for n in SHIPPED_MIX), "mix: all", "etth1 train + validation", "etth1 test",
                      "etth2 train + validation", "etth2 test"]
    assert all(r["best"] in DAYS and np.isfinite([r[f"{d} days"] for d in DAYS]).all() for r in rows)
