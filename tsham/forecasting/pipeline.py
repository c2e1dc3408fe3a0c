"""TshamPipeline: forecasts from arrays, tensors or a pandas long DataFrame (Chronos-style ``predict_df``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsham.checkpoint import load_checkpoint
from tsham.model import TshamModel

# The model tsham ships (experiments/pretrain.py writes it; its card.json says how it was trained).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default"


class TshamPipeline:
    """Inference around a trained :class:`TshamModel`.

    Examples::
        >>> pipe = TshamPipeline.load()  # the shipped default; or TshamPipeline.load("path/to/checkpoint")
        >>> q = pipe.predict([np.sin(np.arange(200) / 5)], horizon=24)   # (1, Q, 24)
        >>> forecast_df = pipe.predict_df(df, horizon=24)                 # id, timestamp, 0.1 .. 0.9, mean
    """

    def __init__(self, model: TshamModel, device: str | torch.device = "cpu", batch_size: int = 64):
        self.model = model.to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             batch_size: int = 64) -> TshamPipeline:
        """A pipeline around the checkpoint folder at ``path``, or around the shipped default model."""
        if path is None:
            if not (DEFAULT_MODEL / "config.json").is_file():
                raise FileNotFoundError(f"no default model is installed in {DEFAULT_MODEL}; pass a checkpoint path")
            path = DEFAULT_MODEL
        return cls(load_checkpoint(path, device), device, batch_size)

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.config.head.quantiles

    @torch.no_grad()
    def predict(
        self,
        context: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
        horizon: int,
        past_covariates: Sequence[np.ndarray] | None = None,
        future_covariates: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Quantile forecasts ``(B, Q, H)`` for univariate series of any lengths (NaN = missing).

        Args:
            context: a list of 1-D arrays (lengths may differ; shorter ones are left-padded as missing),
                a ``[B, T]`` array or tensor. Only the last ``config.context_length`` steps are used.
            horizon: steps to forecast (1 .. ``config.max_horizon``).
            past_covariates: per series ``[T_i, Cp]``, aligned with its context (known up to now).
            future_covariates: per series ``[T_i + horizon, Cf]``: the context steps, then the horizon.
        """
        series = [np.asarray(s, dtype=np.float32).reshape(-1) for s in (context if not torch.is_tensor(context)
                                                                           else context.cpu().numpy())]
        if not series:
            raise ValueError("predict: no series given")
        self._check_targets(series)
        for name, covs, extra in (("past_covariates", past_covariates, 0), ("future_covariates", future_covariates,
                                                                            horizon)):
            if covs is not None and (len(covs) != len(series) or any(
                    len(c) != len(s) + extra for c, s in zip(covs, series, strict=True))):
                raise ValueError(f"predict: {name} must give one array of {'T + horizon' if extra else 'T'} rows "
                                 f"per series")
        out = []
        for start in range(0, len(series), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            T = min(self.model.config.context_length, max(len(s) for s in series[chunk]))
            kwargs = {}
            if past_covariates is not None:
                kwargs["past_covariates"] = self._left_pad(past_covariates[chunk], T)
            if future_covariates is not None:
                kwargs["future_covariates"] = self._left_pad(future_covariates[chunk], T + horizon)
            target = self._left_pad(series[chunk], T)
            out.append(self.model(target, horizon, **kwargs).quantiles[:, 0].cpu().numpy())
        return np.concatenate(out)

    def set_kv_budget(self, fraction: float, context: Sequence[np.ndarray] | None = None, horizon: int = 64
                      ) -> list[float]:
        """Sets the scratchpad budget: every router's threshold is calibrated so that ``fraction`` of the patch
        tokens of ``context`` (series like :meth:`predict`'s, e.g. the histories about to be forecast; only
        their past is read) enter the scratchpad. Fraction 0 makes every layer a pure Gated DeltaNet, 1 full
        attention; those need no context.

        Returns:
            the threshold per router. Undo by reloading the pipeline.
        """
        from tsham.ham import calibrate_kv_budget

        if context is None and fraction not in (0.0, 1.0):
            raise ValueError("set_kv_budget: a fraction strictly between 0 and 1 needs context series to "
                             "calibrate the threshold on")
        if context is None:
            return calibrate_kv_budget(self.model, fraction, lambda: None)
        series = [np.asarray(s, dtype=np.float32).reshape(-1) for s in context]
        self._check_targets(series)
        T = min(self.model.config.context_length, max(len(s) for s in series))
        batch = self._left_pad(series, T)
        return calibrate_kv_budget(self.model, fraction, lambda: self.model(batch, horizon))

    @torch.no_grad()
    def kv_fraction(self, context: Sequence[np.ndarray], horizon: int = 64) -> float:
        """The realised scratchpad fraction (patch tokens routed, averaged over layers and heads) on ``context``."""
        series = [np.asarray(s, dtype=np.float32).reshape(-1) for s in context]
        self._check_targets(series)
        fractions = []
        for start in range(0, len(series), self.batch_size):
            chunk = series[start:start + self.batch_size]
            T = min(self.model.config.context_length, max(len(s) for s in chunk))
            fractions.append(float(self.model(self._left_pad(chunk, T), horizon).kv_fraction) * len(chunk))
        return sum(fractions) / len(series)

    @torch.no_grad()
    def routing_map(self, series: np.ndarray, horizon: int) -> np.ndarray:
        """Per context step of one series ``[T]``: share of layers and heads whose scratchpad holds its patch.

        Only the last ``context_length`` steps are seen; earlier steps get 0.
        """
        series = np.asarray(series, dtype=np.float32).reshape(-1)
        self._check_targets([series])
        batch = self._left_pad([series], min(len(series), self.model.config.context_length))
        out = self.model(batch, horizon)
        P, T = self.model.config.patch.patch_length, batch.shape[1]
        share = torch.stack([d.mask[0].float().mean(-1) for d in out.layers]).mean(0)  # (N,) over patch tokens
        steps = share[: out.num_context_patches].repeat_interleave(P)[-T:].cpu().numpy()  # drop the left pad
        full = np.zeros(len(series), dtype=np.float32)
        full[len(series) - T:] = steps
        return full

    @staticmethod
    def _check_targets(series: list[np.ndarray]) -> None:
        for i, s in enumerate(series):
            if len(s) == 0 or np.isnan(s).all():
                raise ValueError(f"series {i} is empty or all NaN: nothing to forecast from")
            if np.isinf(s).any():
                raise ValueError(f"series {i} contains inf; use NaN for missing values")

    def _left_pad(self, arrays: Sequence[np.ndarray], T: int) -> torch.Tensor:
        """The last T rows of each ``[t_i]`` / ``[t_i, C]`` array, NaN-padded in front -> ``[B, T, C]``."""
        arrays = [np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays]
        batch = np.full((len(arrays), T, arrays[0].shape[1]), np.nan, dtype=np.float32)
        for i, a in enumerate(arrays):
            a = a[-T:]
            batch[i, T - len(a):] = a
        return torch.from_numpy(batch).to(self.device)

    def predict_df(
        self,
        df: pd.DataFrame,
        horizon: int,
        id_column: str = "id",
        timestamp_column: str = "timestamp",
        target: str = "target",
        freq: str | None = None,
        past_covariates: Sequence[str] = (),
        future_covariates: Sequence[str] = (),
        future_df: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecasts every series of a long DataFrame.

        Args:
            df: one row per (series, time step) with ``id_column``, ``timestamp_column``, ``target`` and the
                covariate columns (NaN = missing); any row order.
            horizon: steps ahead. freq: pandas frequency of the future timestamps; inferred per series if None.
            past_covariates: columns of df known only up to now.
            future_covariates: columns known ahead: df holds their past, ``future_df`` (id, timestamp and these
                columns) exactly ``horizon`` future rows per series.

        Returns:
            One row per (series, future step): ``id_column``, ``timestamp_column``, one column per quantile
            level (named ``"0.1"`` ...), and ``"predictions"`` (the median).
        """
        needed = [id_column, timestamp_column, target, *past_covariates, *future_covariates]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ValueError(f"predict_df: columns {missing} not in the DataFrame (it has {list(df.columns)})")
        if future_covariates and future_df is None:
            raise ValueError("predict_df: future_covariates need future_df with their values over the horizon")
        df = df.assign(**{timestamp_column: pd.to_datetime(df[timestamp_column])})
        groups = list(df.sort_values([id_column, timestamp_column]).groupby(id_column, sort=False))
        futures = self._future_rows(future_df, [item for item, _ in groups], horizon, id_column, timestamp_column,
                                    list(future_covariates))
        quantiles = self.predict(
            [g[target].to_numpy(np.float32) for _, g in groups], horizon,
            past_covariates=[g[list(past_covariates)].to_numpy(np.float32) for _, g in groups]
            if past_covariates else None,
            future_covariates=[np.concatenate([g[list(future_covariates)].to_numpy(np.float32), f])
                               for (_, g), f in zip(groups, futures, strict=True)] if future_covariates else None,
        )  # (B, Q, H)
        frames = []
        for (item, g), q in zip(groups, quantiles, strict=True):
            stamps = g[timestamp_column]
            step = freq or (pd.infer_freq(stamps) if len(stamps) >= 3 else None)
            if step is None:
                raise ValueError(f"predict_df: cannot infer the frequency of series {item!r}; pass freq=")
            future = pd.date_range(stamps.iloc[-1], periods=horizon + 1, freq=step)[1:]
            frame = pd.DataFrame({id_column: item, timestamp_column: future})
            for level, values in zip(self.quantiles, q, strict=True):
                frame[str(level)] = values
            frame["predictions"] = q[self.quantiles.index(0.5)]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _future_rows(future_df, items, horizon, id_column, timestamp_column, columns) -> list[np.ndarray]:
        """Per series, the ``[horizon, Cf]`` future covariate values from future_df (checked)."""
        if not columns:
            return [np.zeros((horizon, 0), np.float32)] * len(items)
        missing = [c for c in (id_column, timestamp_column, *columns) if c not in future_df.columns]
        if missing:
            raise ValueError(f"predict_df: future_df lacks columns {missing}")
        future_df = future_df.assign(**{timestamp_column: pd.to_datetime(future_df[timestamp_column])})
        by_id = dict(list(future_df.sort_values(timestamp_column).groupby(id_column, sort=False)))
        rows = []
        for item in items:
            g = by_id.get(item)
            if g is None or len(g) != horizon:
                raise ValueError(f"predict_df: future_df must hold exactly {horizon} rows for series {item!r}; "
                                 f"it has {0 if g is None else len(g)}")
            rows.append(g[columns].to_numpy(np.float32))
        return rows
