import numpy as np
import pytest
import torch


class LastValue(torch.nn.Module):
    """Forecasts the last context value; records the look-backs it was given."""

    def __init__(self):
        super().__init__()
        self.lengths = []

    def forward(self, context, horizon):
        self.lengths.append(context.shape[1])
        return type("Forecast", (), {"median": context[:, -1:, None].expand(-1, 1, horizon).clone()})()


def test_score_reads_the_same_test_targets_at_any_lookback():
    from tsham.experiments.ltsf import TEST_END, TEST_START, score

    rng = np.random.default_rng(0)
    series = rng.normal(size=(TEST_END, 2)).astype(np.float32)
    series[TEST_START - 1] = 5.0  # the last look-back step of the first window: both look-backs end here
    short, long = LastValue(), LastValue()
    a = score(short, series, 96, "cpu", stride=500, lookback=512)
    b = score(long, series, 96, "cpu", stride=500, lookback=2048)
    assert a == pytest.approx(b)  # the forecast uses the last value only: same targets, same errors
    assert set(short.lengths) == {512} and set(long.lengths) == {2048}
    with pytest.raises(ValueError, match="lookback must be in"):
        score(short, series, 96, "cpu", lookback=TEST_START + 1)  # would wrap to the test rows themselves
