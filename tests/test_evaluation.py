"""GIFT-Eval protocol on the offline files: seasonal naive reproduces the published MASE; a model scores."""

import os
from pathlib import Path

import pytest
from gluonts.model.seasonal_naive import SeasonalNaivePredictor

from tsham.config import TshamConfig
from tsham.evaluation import evaluate, gift_eval_data, scoreboard
from tsham.forecasting import TshamPipeline, TshamPredictor
from tsham.model import TshamModel

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (Path(os.environ.get("TSHAM_DATA_DIR", SHARED)) / "m4").is_dir(),
                                reason="no offline data copy (set TSHAM_DATA_DIR)")


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch):
    if "TSHAM_DATA_DIR" not in os.environ:
        monkeypatch.setenv("TSHAM_DATA_DIR", str(SHARED))


@pytest.mark.parametrize(("name", "season", "published"), [("m4_hourly", 24, 1.193), ("m4_weekly", 1, 2.777)])
def test_seasonal_naive_reproduces_published_mase(name, season, published):
    data, freq, h = gift_eval_data(name)
    assert evaluate(SeasonalNaivePredictor(prediction_length=h, season_length=season), data, freq)["MASE"] == \
        pytest.approx(published, abs=5e-4)


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
