"""TshamPipeline: predict on ragged arrays, predict_df round trip, checkpoint loading, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tsham.checkpoint import save_checkpoint
from tsham.config import TshamConfig
from tsham.forecasting import TshamPipeline
from tsham.model import TshamModel


@pytest.fixture
def pipeline(tmp_path):
    torch.manual_seed(0)
    cfg = TshamConfig.small(d_model=32, patch_length=8, n_layers=1, num_heads=2, head_dim=16)
    cfg.context_length = 64
    return TshamPipeline.load(save_checkpoint(TshamModel(cfg), tmp_path / "tiny"))


def test_predict_ragged_and_missing(pipeline):
    series = [np.sin(np.arange(100) / 4), np.r_[np.arange(10.0), np.nan, np.arange(5.0)], np.ones(3)]
    q = pipeline.predict(series, horizon=12)
    assert q.shape == (3, 9, 12) and np.isfinite(q).all()
    assert (np.diff(q, axis=1) >= 0).all()
    # only the last context_length steps matter
    longer = [np.r_[np.random.randn(500), series[0][-64:]]]
    np.testing.assert_allclose(pipeline.predict(longer, 12), pipeline.predict([series[0][-64:]], 12), rtol=1e-5,
                               atol=1e-5)


def test_predict_df(pipeline):
    stamps = pd.date_range("2024-01-01", periods=48, freq="h")
    df = pd.concat([pd.DataFrame({"id": name, "timestamp": stamps, "target": np.random.randn(48) + i})
                    for i, name in enumerate(["a", "b"])])
    df.loc[df.index[5], "target"] = math.nan
    out = pipeline.predict_df(df.sample(frac=1.0, random_state=0), horizon=6)  # any row order
    assert list(out.columns) == ["id", "timestamp", *[str(q) for q in pipeline.quantiles], "predictions"]
    assert len(out) == 12 and set(out["id"]) == {"a", "b"}
    first = out[out["id"] == "a"]["timestamp"]
    assert first.iloc[0] == stamps[-1] + pd.Timedelta(hours=1) and first.iloc[-1] == stamps[-1] + pd.Timedelta(hours=6)
    np.testing.assert_allclose(out["predictions"], out["0.5"])
    alone = pipeline.predict_df(df[df["id"] == "a"].drop(columns="id"), horizon=6)  # no id column: one series
    assert set(alone["id"]) == {"series"}
    np.testing.assert_allclose(alone["predictions"], out[out["id"] == "a"]["predictions"], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        pipeline.predict_df(df["target"], horizon=6)


def test_bad_input(pipeline):
    with pytest.raises(ValueError, match="empty or all NaN"):
        pipeline.predict([np.array([np.nan, np.nan])], 4)
    with pytest.raises(ValueError, match="horizon must lie"):
        pipeline.predict([np.ones(10)], 0)
    with pytest.raises(ValueError, match=r"columns \['target'\]"):
        pipeline.predict_df(pd.DataFrame({"id": [1], "timestamp": ["2024-01-01"], "y": [1.0]}), 3)
    irregular = pd.DataFrame({"id": 1, "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-04",
                                                                     "2024-01-09"]), "target": [1.0, 2, 3, 4]})
    with pytest.raises(ValueError, match="cannot infer the frequency"):
        pipeline.predict_df(irregular, 3)
    with pytest.raises(FileNotFoundError):
        TshamPipeline.load("/nonexistent/checkpoint")


def test_predict_df_with_covariates_and_missing_values(pipeline):
    stamps = pd.date_range("2024-01-01", periods=40, freq="D")
    rng = np.random.default_rng(0)
    df = pd.concat([pd.DataFrame({"id": k, "timestamp": stamps, "target": rng.normal(size=40),
                                  "price": rng.normal(size=40), "holiday": (rng.random(40) < 0.1).astype(float)})
                    for k in ("x", "y")])
    df.loc[df.index[3], "target"] = math.nan
    df.loc[df.index[7], "price"] = math.nan
    future = pd.concat([pd.DataFrame({"id": k, "timestamp": pd.date_range("2024-02-10", periods=5, freq="D"),
                                      "holiday": [0.0, 1.0, 0.0, 0.0, 0.0]}) for k in ("x", "y")])
    out = pipeline.predict_df(df, 5, past_covariates=["price"], future_covariates=["holiday"], future_df=future)
    assert out.shape == (10, 2 + 9 + 1) and np.isfinite(out.drop(columns=["id", "timestamp"]).to_numpy()).all()
    changed = future.assign(holiday=[1.0, 1.0, 1.0, 1.0, 1.0] * 2)
    moved = pipeline.predict_df(df, 5, past_covariates=["price"], future_covariates=["holiday"], future_df=changed)
    assert not np.allclose(moved["0.5"], out["0.5"])  # the known future reaches the forecast
    without = pipeline.predict_df(df, 5)
    assert not np.allclose(without["0.5"], out["0.5"])
    with pytest.raises(ValueError, match="need future_df"):
        pipeline.predict_df(df, 5, future_covariates=["holiday"])
    with pytest.raises(ValueError, match="exactly 5 rows for series 'y'"):
        pipeline.predict_df(df, 5, future_covariates=["holiday"], future_df=future[future["id"] == "x"])
    with pytest.raises(ValueError, match=r"columns \['temp'\]"):
        pipeline.predict_df(df, 5, past_covariates=["temp"])


def test_constant_and_short_series(pipeline):
    q = pipeline.predict([np.full(50, 7.0), np.array([3.0])], horizon=4)  # constant; shorter than a patch
    assert np.isfinite(q).all() and q.shape == (2, 9, 4)


def test_predict_takes_one_series_a_batch_or_a_list_and_refuses_other_shapes(pipeline):
    x = np.sin(np.arange(50) / 3)
    one = pipeline.predict(x, 4)
    assert one.shape == (1, 9, 4)  # a 1-D array is one series, not 50 series of one step
    np.testing.assert_array_equal(pipeline.predict(torch.tensor(x), 4), one)
    np.testing.assert_array_equal(pipeline.predict(x.tolist(), 4), one)
    assert pipeline.predict(np.stack([x, -x]), 4).shape == (2, 9, 4)
    for bad, message in ((x[:, None], "50 series of one step"), (np.ones((2, 50, 3)), r"got shape \(2, 50, 3\)"),
                         ([x, np.ones((5, 2))], "series 1 must be 1-D"), ([], "no series")):
        with pytest.raises(ValueError, match=message):
            pipeline.predict(bad, 4)
    assert pipeline.kv_fraction(x) == pipeline.kv_fraction([x])


def test_a_forecast_does_not_depend_on_its_batch_mates(pipeline):
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=37), rng.normal(size=90), rng.normal(size=37)
    alone = pipeline.predict([a], 6)[0]
    np.testing.assert_allclose(pipeline.predict([b, a, c], 6)[1], alone, atol=1e-6)  # padding moved patch cuts
    pipeline.batch_size = 1
    np.testing.assert_allclose(pipeline.predict([b, a], 6)[1], alone, atol=1e-6)


def test_routing_map_covers_a_series_whose_length_is_not_a_multiple_of_the_patch(pipeline):
    for align in ("end", "start"):
        pipeline.model.config.align = align
        for length in (37, 40, 100):
            share = pipeline.routing_map(np.sin(np.arange(length) / 3), 4)
            assert share.shape == (length,) and ((share >= 0) & (share <= 1)).all()


def test_predict_df_names_bad_ids_timestamps_and_values(pipeline):
    stamps = pd.date_range("2024-01-01", periods=30, freq="h")
    good = pd.DataFrame({"id": "a", "timestamp": stamps, "target": np.sin(np.arange(30.0))})
    cases = [
        (pd.concat([good, good.tail(2)]), {}, "timestamp 2024-01-02 04:00:00 more than once"),
        (good.drop(index=[10, 11]), {"freq": "h"}, "not regular at freq 'h'"),
        (good.drop(index=[10, 11]), {}, "cannot infer the frequency"),
        (good.assign(id=["a"] * 29 + [None]), {}, "1 rows have no id"),
        (good.assign(target=good["target"].astype(object).where(good.index != 3, "abc")), {}, "'abc' at row 3"),
    ]
    for df, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            pipeline.predict_df(df, 3, **kwargs)
    with pytest.raises(ValueError, match="horizon must lie"):
        pipeline.predict_df(good, -2)
    steps = pipeline.predict_df(good.assign(timestamp=np.arange(100, 160, 2)), 3)  # integer time steps stay steps
    assert steps["timestamp"].tolist() == [160, 162, 164]
    mdy = good.assign(timestamp=stamps.strftime("%m/%d/%Y %H:%M"))  # sorted as dates, not as text
    np.testing.assert_allclose(pipeline.predict_df(mdy, 3)["0.5"], pipeline.predict_df(good, 3)["0.5"])
    floats = pipeline.predict_df(good.assign(timestamp=np.arange(2000.0, 2030.0)), 2)  # whole floats: steps
    assert floats["timestamp"].tolist() == [2030, 2031]  # they were read as nanoseconds after 1970
    with pytest.raises(ValueError, match="not whole time steps"):
        pipeline.predict_df(good.assign(timestamp=np.arange(30) / 2), 2)
    with pytest.raises(ValueError, match="not regular at freq 1"):  # a gap in integer steps at a given step
        pipeline.predict_df(good.assign(timestamp=np.r_[0:10, 12:32]), 2, freq="1")
    with pytest.raises(ValueError, match="freq must be a whole step"):
        pipeline.predict_df(good.assign(timestamp=np.arange(30)), 2, freq="D")
    monthly = good.assign(timestamp=pd.date_range("2020-01-01", periods=30, freq="MS") + pd.Timedelta(days=14))
    assert pipeline.predict_df(monthly, 2)["timestamp"].tolist() == [pd.Timestamp("2022-07-15"),
                                                                     pd.Timestamp("2022-08-15")]  # on the 15th
    berlin = good.assign(timestamp=pd.date_range("2021-03-15", periods=30, freq="D", tz="Europe/Berlin"))
    assert pipeline.predict_df(berlin, 1)["timestamp"].tolist() == [pd.Timestamp("2021-04-14", tz="Europe/Berlin")]
    two = pd.concat([good, good.assign(id="b")]).astype({"id": "category"})
    only_a = pipeline.predict_df(two[two["id"] == "a"], 2)  # "b" is an unused category: no series
    assert only_a["id"].astype(str).unique().tolist() == ["a"]


def test_future_df_must_carry_the_forecast_timestamps(pipeline):
    stamps = pd.date_range("2024-01-01", periods=30, freq="D")
    df = pd.DataFrame({"id": "a", "timestamp": stamps, "target": np.arange(30.0), "promo": 0.0})
    wrong = pd.DataFrame({"id": "a", "timestamp": pd.date_range("2019-06-01", periods=3, freq="D"), "promo": 1.0})
    with pytest.raises(ValueError, match="are not the forecast's"):
        pipeline.predict_df(df, 3, future_covariates=["promo"], future_df=wrong)
    right = wrong.assign(timestamp=pd.date_range(stamps[-1] + pd.Timedelta(days=1), periods=3, freq="D"))
    assert len(pipeline.predict_df(df, 3, future_covariates=["promo"], future_df=right)) == 3
    with pytest.raises(ValueError, match="no future_covariates name its columns"):  # dropped without a word before
        pipeline.predict_df(df, 3, future_df=right)


def test_a_history_of_one_value_is_forecast_flat_at_it(pipeline):
    constant, single = np.full(50, 1000.0), np.r_[np.full(40, np.nan), 7.5]
    varying = np.r_[np.full(49, 1000.0), 1001.0]
    q = pipeline.predict([constant, single, varying], 5)
    assert (q[0] == 1000.0).all() and (q[1] == 7.5).all()  # the model's zero-input spread times 1000 was +-1600
    assert np.ptp(q[2]) > 0  # one different value: the model forecasts
    counter = np.r_[np.full(260, 1e6), np.full(40, 1e6 + 1)]  # moved by 1e-6 of its level: flat at the middle
    noisy = 1000.0 + 1e-3 * np.random.default_rng(0).standard_normal(300)
    q = pipeline.predict([counter, noisy], 5)
    assert (q[0] == np.float32(1e6 + 0.5)).all()  # the model's band was 994,000 to 1,000,000
    assert np.ptp(q[1]) == 0 and abs(q[1][0, 0] - 1000.0) < 0.01


def test_a_short_series_padding_never_enters_the_scratchpad_and_budgets_count_its_own_tokens(pipeline):
    model = pipeline.model  # context 64 steps of patches of 8: a 20-step series is 3 tokens of 8 plus padding
    rng = np.random.default_rng(0)
    short = [rng.normal(size=20).astype(np.float32) for _ in range(8)]
    pipeline.set_kv_budget(0.5, short, horizon=8)
    with torch.no_grad():
        out = model(pipeline._left_pad(short, 64), 8)
    own = out.num_context_patches - 5  # the 44 padded steps fill 5 whole tokens
    for d in out.layers:
        assert not d.mask[:, :5].any()  # the padding routes nothing
        routed = d.mask[:, 5:].float().mean()  # the series' own tokens (context and forecast)
        assert float(d.realised) == pytest.approx(float(routed))
    assert own == 3 and abs(pipeline.kv_fraction(short, horizon=8) - 0.5) <= 0.1


def test_kv_fraction_pools_the_tokens_of_every_series_whatever_the_batches(pipeline):
    rng = np.random.default_rng(1)
    series = [rng.normal(size=n).astype(np.float32) for n in (12, 12, 12, 12, 64, 64, 64, 64)]
    pipeline.set_kv_budget(0.3, series, horizon=8)
    whole = pipeline.kv_fraction(series, horizon=8)
    pipeline.batch_size = 3  # batches of mixed and of equal lengths: the same tokens, the same fraction
    assert pipeline.kv_fraction(series, horizon=8) == pytest.approx(whole, abs=1e-9)
    assert abs(whole - 0.3) <= 0.05  # what set_kv_budget set, on the same tokens
