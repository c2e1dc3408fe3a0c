"""GluonTS adapters: a Predictor returning QuantileForecast objects, and an Estimator that trains one.

With these, gluonts' ``evaluate_model``, ``backtest`` and dataset tooling work unchanged:

>>> predictor = TshamPredictor(TshamPipeline.load(path), prediction_length=48)
>>> evaluate_model(predictor, test_data=test_data, metrics=[MASE(), MeanWeightedSumQuantileLoss(...)])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gluonts.dataset import Dataset
from gluonts.model.estimator import Estimator
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import Predictor

from tsham.config import TshamConfig
from tsham.forecasting.pipeline import TshamPipeline


def _start_of_forecast(entry: dict):
    """The period right after the last observed step of a gluonts entry."""
    target = np.asarray(entry["target"])
    return entry["start"] + target.shape[-1]


class TshamPredictor(Predictor):
    """Forecasts a gluonts dataset of univariate entries (``target`` ``[T]``; split multivariate ``[C, T]`` ones per
    channel first, as GIFT-Eval's ``to_univariate`` does) as :class:`QuantileForecast` objects, in batches.

    Args:
        pipeline: a :class:`TshamPipeline`. prediction_length: forecast steps. batch_size: entries gathered per
            call to the pipeline (which forwards its own ``batch_size`` series at a time).
    """

    def __init__(self, pipeline: TshamPipeline, prediction_length: int, batch_size: int = 64):
        pipeline._check_horizon(prediction_length)  # tsham's message, not gluonts' bare assertion
        super().__init__(prediction_length=prediction_length)
        self.pipeline, self.batch_size = pipeline, batch_size

    def predict(self, dataset: Dataset, **kwargs) -> Iterator[QuantileForecast]:
        keys = [str(q) for q in self.pipeline.quantiles]
        batch: list[dict] = []
        first = 0  # the dataset position of the batch's first entry
        for entry in dataset:
            batch.append(entry)
            if len(batch) == self.batch_size:
                yield from self._forecast(batch, keys, first)
                batch, first = [], first + len(batch)
        if batch:
            yield from self._forecast(batch, keys, first)

    def _forecast(self, entries: list[dict], keys: list[str], first: int = 0) -> Iterator[QuantileForecast]:
        targets = [np.asarray(e["target"], dtype=np.float32) for e in entries]
        if any(t.ndim != 1 for t in targets):
            raise ValueError("TshamPredictor: multivariate entries must be split per channel first "
                             "(gluonts.dataset.split / to_univariate); got a target with shape "
                             f"{next(t.shape for t in targets if t.ndim != 1)}")
        # what an error calls a bad series: its item_id, else its position in the dataset
        names = [e.get("item_id", f"#{first + i}") for i, e in enumerate(entries)]
        quantiles = self.pipeline._predict(targets, self.prediction_length, names=names)  # (B, Q, H)
        for entry, q in zip(entries, quantiles, strict=True):
            yield QuantileForecast(q, start_date=_start_of_forecast(entry), forecast_keys=keys,
                                   item_id=entry.get("item_id"))

    def serialize(self, path: Path) -> None:
        """gluonts' Predictor API: the checkpoint folder (our format, no pickle) plus ``predictor.json`` with the
        prediction length and batch size; :meth:`deserialize` reads it back."""
        import json

        from tsham.checkpoint import save_checkpoint

        save_checkpoint(self.pipeline.model, Path(path))
        (Path(path) / "predictor.json").write_text(json.dumps({"prediction_length": self.prediction_length,
                                                               "batch_size": self.batch_size}))

    @classmethod
    def deserialize(cls, path: Path, device: str | None = None, **kwargs) -> TshamPredictor:
        """The predictor :meth:`serialize` wrote to ``path`` (on ``device``, default the CPU)."""
        from tsham.checkpoint import read_json

        meta = Path(path) / "predictor.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{meta} not found: {path} was not written by TshamPredictor.serialize (a bare "
                                    "checkpoint loads with TshamPipeline.load)")
        settings = read_json(meta)
        return cls(TshamPipeline.load(path, device=device or "cpu"), settings["prediction_length"],
                   settings.get("batch_size", 64))


class TshamEstimator(Estimator):
    """Trains a tsham model on a gluonts dataset and returns a :class:`TshamPredictor` (the Estimator pattern).

    Args:
        prediction_length: forecast steps. config: model config (``TshamConfig.small()`` by default).
        train_config: steps, batch size, learning rate...; its horizon is set to ``prediction_length``.
        out_dir: where the run and the exported model go.
    """

    def __init__(self, prediction_length: int, out_dir: str | Path, config: TshamConfig | None = None,
                 train_config=None):
        from tsham.training import TrainConfig  # Lightning is imported only by users of the Estimator

        super().__init__()
        self.prediction_length, self.out_dir = prediction_length, Path(out_dir)
        self.config = config or TshamConfig.small()
        # a copy: the caller's config is not changed, and the run trains on the horizon it will forecast
        self.train_config = dataclasses.replace(train_config or TrainConfig(), horizon=prediction_length, horizons=())

    def train(self, training_data: Dataset, validation_data: Dataset | None = None, **kwargs) -> TshamPredictor:
        """Trains on every entry's ``target`` (1-D: tsham's predictor forecasts univariate series) and returns the
        predictor. ``validation_data`` is refused (ValueError): hold out each series' tail with
        ``TrainConfig.validation_steps`` instead (the best-validating weights are exported)."""
        from tsham.training import PoolSeries, train

        if validation_data is not None:
            raise ValueError("TshamEstimator.train: validation_data is not used; set TrainConfig(validation_steps=N) "
                             "to validate on the last N steps of each training series")
        targets = [np.asarray(e["target"], dtype=np.float32) for e in training_data]
        if any(t.ndim != 1 for t in targets):
            raise ValueError("TshamEstimator.train: multivariate entries must be split per channel first "
                             "(TshamPredictor forecasts univariate series)")
        pool = [PoolSeries.from_array(t) for t in targets]
        model = train(self.config, self.train_config, pool, self.out_dir, progress=kwargs.get("progress", True))
        return TshamPredictor(TshamPipeline(model), self.prediction_length)
