import numpy as np
import pandas as pd
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
    from tsham.experiments.ltsf import build_parser, results_name

    parser = build_parser()
    protocol = parser.parse_args(["--datasets", "etth2", "etth1"])
    assert results_name(protocol) == "ltsf_etth"
    assert results_name(protocol, "_zero_shot") == "ltsf_etth_zero_shot"
    variant = parser.parse_args(["--datasets", "etth2", "--lookback", "2048", "--stride", "24", "--freeze", "stack",
                                 "--horizons", "336", "--no-validation", "--seed", "2", "--tag", "lr1e-5"])
    assert results_name(variant) == "ltsf_etth2_L2048_stride24_freeze-stack_h336_noval_seed2_lr1e-5"


class Ramp(torch.nn.Module):
    """Forecasts the continuation of a ramp (``x_t = t``): exact only where the targets follow the context."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, context, horizon):
        self.windows += len(context)
        steps = context[:, -1:] + 1 + torch.arange(horizon, dtype=context.dtype)
        return type("Forecast", (), {"median": steps[:, None]})()


@pytest.mark.parametrize("lookback, horizon", [(512, 96), (2048, 720)])
def test_score_forecasts_every_test_window_from_the_steps_just_before_it(lookback, horizon):
    from tsham.experiments.ltsf import TEST_END, TEST_START, score

    series = np.arange(TEST_END, dtype=np.float64)[:, None].repeat(2, 1)  # x_t = t on two channels
    ramp = Ramp()
    assert score(ramp, series, horizon, "cpu", lookback=lookback) == (0.0, 0.0)  # targets right after the context
    assert ramp.windows == 2 * (TEST_END - TEST_START - horizon + 1)  # every window, first target at TEST_START
    shifted = series.copy()
    shifted[TEST_START] += 1  # the first target step: only a window that forecasts it sees the change
    assert score(Ramp(), shifted, horizon, "cpu", lookback=lookback)[0] > 0


def test_a_failed_finetune_stops_the_run_instead_of_scoring_an_older_model(monkeypatch, tmp_path):
    from tsham.experiments import ltsf

    monkeypatch.setattr(ltsf, "load_ett", lambda name: pd.DataFrame({"OT": np.zeros(3)}))
    monkeypatch.setattr(ltsf, "cli", lambda argv: 2)  # `tsham finetune` reporting bad input
    args = ltsf.build_parser().parse_args(["--datasets", "etth1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="tsham finetune failed on etth1"):
        ltsf.finetune("etth1", np.zeros((ltsf.TEST_START, 1), np.float32), args, tmp_path)


def test_the_finetune_validates_by_the_protocols_metric_with_the_given_seed(monkeypatch, tmp_path):
    from tsham.experiments import ltsf

    calls = []
    monkeypatch.setattr(ltsf, "load_ett", lambda name: pd.DataFrame({"OT": np.zeros(3)}))
    monkeypatch.setattr(ltsf, "cli", lambda argv: calls.append(argv) or 0)
    args = ltsf.build_parser().parse_args(["--datasets", "etth1", "--out", str(tmp_path), "--seed", "3"])
    ltsf.finetune("etth1", np.zeros((ltsf.TEST_START, 1), np.float32), args, tmp_path)
    line = " ".join(calls[0])
    assert "--seed 3" in line and "--val-metric mse" in line and "--val-windows 2048" in line
    assert "--validation-steps 2880" in line and "--horizons 96 192 336 720" in line


def test_zero_shot_refuses_fine_tune_options():
    from tsham.experiments import ltsf

    parser = ltsf.build_parser()
    args = parser.parse_args(["--zero-shot", "--lr", "1e-5"])
    with pytest.raises(SystemExit):
        ltsf.check_args(parser, args)
    with pytest.raises(SystemExit):  # a negative seed would read as seed 0 in a band
        ltsf.check_args(parser, parser.parse_args(["--seed", "-1"]))


@pytest.mark.parametrize("horizon, dropped", [(96, 97), (192, 1), (336, 113), (720, 113)])
def test_patchtst_windows_drop_the_last_incomplete_batch_of_128(horizon, dropped):
    from tsham.experiments.ltsf import TEST_END, TEST_START, patchtst_windows

    n = TEST_END - TEST_START - horizon + 1
    assert n - patchtst_windows(n) == dropped
    assert patchtst_windows(256) == 256 and patchtst_windows(127) == 0


class Zero(torch.nn.Module):
    """Forecasts zero: a window's errors are its targets."""

    def forward(self, context, horizon):
        return type("Forecast", (), {"median": torch.zeros(len(context), 1, horizon, dtype=context.dtype)})()


@pytest.mark.parametrize("stride", [1, 7])
def test_the_patchtst_windows_score_averages_exactly_the_windows_before_the_cut(stride):
    from tsham.experiments.ltsf import TEST_END, TEST_START, model_scores, patchtst_windows, score

    horizon = 96
    n = TEST_END - TEST_START - horizon + 1
    series = np.random.default_rng(0).normal(size=(TEST_END, 2)).astype(np.float32)
    series[TEST_START + patchtst_windows(n):] *= 10  # targets only the windows PatchTST/64 dropped reach in full
    index = np.arange(0, n, stride)
    targets = series[TEST_START + index[:, None] + np.arange(horizon)]  # (windows, H, C)
    kept = index < patchtst_windows(n)
    scores = model_scores(Zero(), series, horizon, "cpu", stride=stride, lookback=512)
    assert scores["MSE"] == pytest.approx(float((targets ** 2).mean()), rel=1e-5)
    assert scores["MSE_patchtst_windows"] == pytest.approx(float((targets[kept] ** 2).mean()), rel=1e-5)
    assert scores["MAE_patchtst_windows"] == pytest.approx(float(np.abs(targets[kept]).mean()), rel=1e-5)
    assert scores["MSE_patchtst_windows"] < scores["MSE"] / 2  # the dropped windows' large targets are left out
    assert score(Zero(), series, horizon, "cpu", stride=stride, lookback=512)[0] == pytest.approx(scores["MSE"])
