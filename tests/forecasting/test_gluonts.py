"""GluonTS: the Estimator trains, the Predictor's QuantileForecasts go through evaluate_model unchanged."""

import numpy as np
import pandas as pd
import pytest
from gluonts.dataset.common import ListDataset
from gluonts.dataset.split import split
from gluonts.ev.metrics import MASE, MeanWeightedSumQuantileLoss
from gluonts.model import evaluate_model
from gluonts.model.forecast import QuantileForecast

from tsham.config import TshamConfig
from tsham.forecasting import TshamEstimator, TshamPredictor
from tsham.training import TrainConfig


def dataset(n=6, length=160):
    rng = np.random.default_rng(0)
    wave = [np.sin(np.arange(length) * 2 * np.pi / 24 + k) * (1 + k) + rng.normal(0, 0.1, length) for k in range(n)]
    return ListDataset([{"target": w, "start": pd.Period("2024-01-01", freq="h"), "item_id": f"s{k}"}
                        for k, w in enumerate(wave)], freq="h")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    cfg = TshamConfig.small(d_model=16, patch_length=8, n_layers=1, num_heads=2, head_dim=8)
    cfg.context_length = 64
    est = TshamEstimator(12, tmp_path_factory.mktemp("est"), cfg, TrainConfig(steps=5, batch_size=4, warmup_steps=1))
    train, _ = split(dataset(), offset=-24)
    return est.train(train, progress=False)


def test_predictor_yields_quantile_forecasts(predictor):
    assert isinstance(predictor, TshamPredictor)
    forecasts = list(predictor.predict(dataset(3)))
    assert len(forecasts) == 3 and all(isinstance(f, QuantileForecast) for f in forecasts)
    f = forecasts[0]
    assert f.forecast_array.shape == (9, 12) and f.item_id == "s0"
    assert f.start_date == pd.Period("2024-01-01", freq="h") + 160
    np.testing.assert_allclose(f.quantile(0.5), f.forecast_array[4])


def test_a_serialized_predictor_deserializes_to_the_same_forecasts(predictor, tmp_path):
    predictor.batch_size = 5
    predictor.serialize(tmp_path / "p")
    back = TshamPredictor.deserialize(tmp_path / "p")
    assert (back.prediction_length, back.batch_size) == (12, 5)
    for a, b in zip(predictor.predict(dataset(3)), back.predict(dataset(3)), strict=True):
        np.testing.assert_array_equal(a.forecast_array, b.forecast_array)
    with pytest.raises(FileNotFoundError, match="not written by TshamPredictor.serialize"):
        TshamPredictor.deserialize(tmp_path)


def test_evaluate_model_works_unchanged(predictor):
    _, test_template = split(dataset(), offset=-24)
    test_data = test_template.generate_instances(prediction_length=12, windows=2)
    metrics = evaluate_model(predictor, test_data=test_data, metrics=[MASE(), MeanWeightedSumQuantileLoss(
        quantile_levels=[0.1, 0.5, 0.9])], axis=None, seasonality=24)
    values = metrics.to_numpy().ravel()
    assert values.shape == (2,) and np.isfinite(values).all() and (values > 0).all()


def test_a_bad_entry_is_named_by_its_place_in_the_dataset(predictor):
    entries = [{"target": np.sin(np.arange(80.0)), "start": pd.Period("2024-01-01", freq="h")} for _ in range(7)]
    entries[5]["target"] = np.full(80, np.nan)
    small = TshamPredictor(predictor.pipeline, 12, batch_size=2)  # entry 5 is the second of the third batch
    with pytest.raises(ValueError, match="series '#5' is empty or all NaN"):
        list(small.predict(entries))


def test_multivariate_entries_are_refused_with_a_hint(predictor):
    data = [{"target": np.ones((2, 50)), "start": pd.Period("2024-01-01", freq="h")}]
    with pytest.raises(ValueError, match="split per channel"):
        list(predictor.predict(data))


def test_a_predictor_names_a_bad_prediction_length(predictor):
    from tsham.forecasting import TshamPredictor

    for bad in (0, -3, 10_000):
        with pytest.raises(ValueError, match="horizon must lie in 1.."):
            TshamPredictor(predictor.pipeline, prediction_length=bad)


def test_estimator_keeps_the_callers_config_and_refuses_what_it_does_not_use(tmp_path):
    mine = TrainConfig(steps=1, horizons=(4, 8))
    est = TshamEstimator(24, tmp_path, TshamConfig.small(d_model=16, patch_length=8, n_layers=1, num_heads=2,
                                                         head_dim=8), mine)
    assert mine.horizon != 24 and mine.horizons == (4, 8)  # unchanged
    assert est.train_config.horizon == 24 and est.train_config.horizons == ()  # trains the horizon it forecasts
    with pytest.raises(ValueError, match="validation_data is not used"):
        est.train(dataset(), validation_data=dataset())
