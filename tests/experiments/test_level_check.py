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
