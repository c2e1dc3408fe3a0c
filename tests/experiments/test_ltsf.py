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


def test_the_profile_baseline_is_the_mean_of_the_last_cycles_and_copies_an_exact_cycle():
    from tsham.experiments.ltsf import TEST_END, SeasonalProfile, profile_scores, score

    profile = SeasonalProfile(period=3, seasons=2)
    context = torch.tensor([[9.0, 9, 9, 1, 2, 3, 3, 4, 5]])
    torch.testing.assert_close(profile(context, 7).median[0, 0], torch.tensor([2.0, 3, 4, 2, 3, 4, 2]))
    with pytest.raises(ValueError, match="needs 6 context steps"):
        profile(context[:, :5], 4)
    day = np.sin(np.arange(24) / 24 * 2 * np.pi).astype(np.float32)
    series = np.tile(day, TEST_END // 24)[:, None]  # (TEST_END, 1): one exact daily cycle
    assert score(SeasonalProfile(), series, 96, "cpu", stride=97, lookback=512) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert profile_scores(series, 96, "cpu", stride=97, lookback=503) == {}  # 21 days need 504 steps
    assert profile_scores(series, 96, "cpu", stride=97, lookback=504)["profile_MSE"] == pytest.approx(0.0, abs=1e-6)


def test_results_of_a_variant_go_beside_the_protocols_not_over_them():
    from types import SimpleNamespace

    from tsham.experiments.ltsf import HORIZONS, LOOKBACK, results_name

    protocol = SimpleNamespace(datasets=["etth2", "etth1"], lookback=LOOKBACK, stride=1, freeze="none",
                               horizons=list(HORIZONS))
    assert results_name(protocol) == "ltsf_etth"
    assert results_name(protocol, "_zero_shot") == "ltsf_etth_zero_shot"
    variant = SimpleNamespace(datasets=["etth2"], lookback=2048, stride=24, freeze="stack", horizons=[336])
    assert results_name(variant) == "ltsf_etth2_L2048_strided_freeze-stack_h336"
