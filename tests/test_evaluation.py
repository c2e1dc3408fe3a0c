"""GIFT-Eval protocol on the offline files: seasonal naive reproduces the published MASE; a model scores."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsham.config import TshamConfig
from tsham.evaluation import SeasonalNaiveQuantiles, evaluate, gift_eval_data, scoreboard
from tsham.forecasting import TshamPipeline, TshamPredictor
from tsham.model import TshamModel

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (Path(os.environ.get("TSHAM_DATA_DIR", SHARED)) / "m4").is_dir(),
                                reason="no offline data copy (set TSHAM_DATA_DIR)")


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch):
    if "TSHAM_DATA_DIR" not in os.environ:
        monkeypatch.setenv("TSHAM_DATA_DIR", str(SHARED))


@pytest.mark.parametrize(("name", "season", "published"), [("m4_hourly", 24, (1.193, 0.038)),
                                                          ("m4_weekly", 1, (2.777, 0.061))])
def test_seasonal_naive_reproduces_published_mase_and_crps(name, season, published):
    data, freq, h = gift_eval_data(name)
    scores = evaluate(SeasonalNaiveQuantiles(prediction_length=h, season_length=season), data, freq)
    assert scores["MASE"] == pytest.approx(published[0], abs=5e-4)
    assert scores["CRPS"] == pytest.approx(published[1], abs=5e-4)  # gluonts' point naive: 0.048 on m4_hourly


def test_windows_follow_the_protocol():
    data, _, h = gift_eval_data("etth1", "medium")
    assert h == 480 and len(list(data.input)) == 7 * 4  # 7 channels x min(max(1, ceil(1742 / 480)), 20) windows


def test_model_scoreboard_has_ratios():
    cfg = TshamConfig.small(d_model=16, patch_length=8, n_layers=1, num_heads=2, head_dim=8)
    cfg.context_length = 64
    pipe = TshamPipeline(TshamModel(cfg))
    table = scoreboard(lambda h: TshamPredictor(pipe, h), [("m4_weekly", "short")])
    row = table.iloc[0]
    assert row["naive_MASE"] == pytest.approx(2.777, abs=5e-4)
    assert row["MASE_ratio"] == pytest.approx(row["MASE"] / row["naive_MASE"]) and row["CRPS"] > 0


def test_unknown_configuration():
    with pytest.raises(ValueError, match="only term 'short'"):
        gift_eval_data("m4_hourly", "long")
    with pytest.raises(ValueError, match="unknown term"):
        gift_eval_data("etth1", "forever")


def test_seasonal_naive_quantiles_widen_once_per_season():
    from statistics import NormalDist

    target = np.tile([1.0, 3.0, 2.0], 6) + np.r_[np.zeros(9), np.full(9, 0.5)]  # one seasonal step of +0.5
    item = {"target": target, "start": pd.Period("2024-01-01", freq="D")}
    forecast = SeasonalNaiveQuantiles(prediction_length=7, season_length=3).predict_item(item)
    sigma = np.sqrt(0.5 ** 2 * 3 / 15)  # 15 seasonal differences, three of them 0.5
    expected_09 = np.tile([1.5, 3.5, 2.5], 3)[:7] + NormalDist().inv_cdf(0.9) * sigma * np.sqrt([1, 1, 1, 2, 2, 2, 3])
    np.testing.assert_allclose(forecast.quantile(0.9), expected_09, rtol=1e-6)
    np.testing.assert_allclose(forecast.quantile(0.5), np.tile([1.5, 3.5, 2.5], 3)[:7])
