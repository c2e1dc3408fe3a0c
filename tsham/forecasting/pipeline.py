"""TshamPipeline: forecasts from arrays, tensors or a pandas long DataFrame (Chronos-style ``predict_df``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsham.checkpoint import load_checkpoint
from tsham.io import future_stamps, long_frame, long_series
from tsham.model import TshamModel
from tsham.series import flat_where_constant, observed_range

# The model tsham ships (experiments/pretrain.py writes it; its card.json says how it was trained).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default"


def as_series(context, what: str = "predict: context") -> list[np.ndarray]:
    """Series from what users pass: one series (a 1-D array, tensor or list of numbers), a ``[B, T]`` array or
    tensor (B series), or a list of 1-D series of any lengths -> a list of float32 ``[T_i]`` arrays.
    Anything else (a ``[B, T, C]`` array, a ``[T, 1]`` column, text) raises ValueError naming the problem."""
    if torch.is_tensor(context):
        context = context.detach().cpu().numpy()
    items = None
    if not isinstance(context, np.ndarray):
        if len(context) == 0:
            raise ValueError(f"{what}: no series given")
        try:
            context = np.asarray(context, dtype=np.float32)  # numbers, or rows of one length
        except (ValueError, TypeError):
            items = list(context)  # ragged: one series per item
    if items is None:
        if context.ndim not in (1, 2):
            raise ValueError(f"{what} must be one 1-D series, a [B, T] array or a list of 1-D series; got shape "
                             f"{context.shape}")
        if context.ndim == 2 and context.shape[1] == 1 and context.shape[0] > 1:
            raise ValueError(f"{what}: an array of shape {context.shape} would be {context.shape[0]} series of one "
                             f"step each; pass one series as a 1-D array, or B series as [B, T]")
        items = [context] if context.ndim == 1 else list(context)
    series = []
    for i, item in enumerate(items):
        if torch.is_tensor(item):
            item = item.detach().cpu().numpy()
        try:
            array = np.asarray(item, dtype=np.float32)
        except (ValueError, TypeError):
            raise ValueError(f"{what}: series {i} is not numeric") from None
        if array.ndim != 1:
            raise ValueError(f"{what}: series {i} must be 1-D (one value per time step); got shape {array.shape}")
        series.append(array)
    if not series:
        raise ValueError(f"{what}: no series given")
    return series


class TshamPipeline:
    """Inference around a trained :class:`TshamModel`.

    Examples::
        >>> pipe = TshamPipeline.load()  # the shipped default; or TshamPipeline.load("path/to/checkpoint")
        >>> q = pipe.predict([np.sin(np.arange(200) / 5)], horizon=24)   # (1, Q, 24)
        >>> forecast_df = pipe.predict_df(df, horizon=24)   # id, timestamp, 0.1 .. 0.9, predictions (the median)
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

    def predict(
        self,
        context: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
        horizon: int,
        past_covariates: Sequence[np.ndarray] | None = None,
        future_covariates: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Quantile forecasts ``(B, Q, H)`` for univariate series of any lengths (NaN = missing).

        Args:
            context: one series (a 1-D array or tensor), a ``[B, T]`` array or tensor, or a list of 1-D series
                (lengths may differ). Each is cut or left-padded (as missing) to ``config.context_length`` steps,
                as in training, so a forecast does not depend on the other series of the call.
            horizon: steps to forecast (1 .. ``config.max_horizon``).
            past_covariates: per series ``[T_i, Cp]`` (or ``[T_i]``), aligned with its context (known up to now).
            future_covariates: per series ``[T_i + horizon, Cf]``: the context steps, then the horizon.
        """
        return self._predict(as_series(context), horizon, past_covariates, future_covariates)

    @torch.no_grad()
    def _predict(self, series: list[np.ndarray], horizon: int, past_covariates=None, future_covariates=None,
                 names: Sequence | None = None) -> np.ndarray:
        """:meth:`predict` on checked series; ``names`` (ids) are what its errors call them."""
        self._check_horizon(horizon)
        self._check_targets(series, names)
        covariates = {}
        for name, covs, extra in (("past_covariates", past_covariates, 0),
                                  ("future_covariates", future_covariates, horizon)):
            if covs is None:
                continue
            covs = [np.asarray(c, dtype=np.float32) for c in covs]
            covs = [c[:, None] if c.ndim == 1 else c for c in covs]
            if len(covs) != len(series) or any(c.ndim != 2 or len(c) != len(s) + extra
                                               for c, s in zip(covs, series, strict=True)):
                raise ValueError(f"predict: {name} must give one [{'T + horizon' if extra else 'T'}, C] array per "
                                 f"series ({len(series)} series)")
            if len({c.shape[1] for c in covs}) > 1:
                raise ValueError(f"predict: every series needs the same number of {name} columns; got "
                                 f"{sorted({c.shape[1] for c in covs})}")
            covariates[name] = (covs, extra)
        out = np.empty((len(series), len(self.quantiles), horizon), np.float32)
        # every series cut or left-padded (as missing) to the context length, as the training windows are: a fixed
        # length keeps each forecast independent of its batch mates (padding to the longest in the batch moved
        # where a shorter series' patches were cut)
        T = self.model.config.context_length
        for rows in self._chunks(len(series)):
            kwargs = {name: self._left_pad([covs[i] for i in rows], T + extra)
                      for name, (covs, extra) in covariates.items()}
            target = self._left_pad([series[i] for i in rows], T)
            quantiles = flat_where_constant(self.model(target, horizon, **kwargs).quantiles, *observed_range(target))
            out[rows] = quantiles[:, 0].cpu().numpy()
        return out

    def _chunks(self, n: int):
        """The row indices of at most ``batch_size`` of ``n`` series, one batch at a time."""
        for start in range(0, n, self.batch_size):
            yield list(range(start, min(start + self.batch_size, n)))

    def set_kv_budget(self, fraction: float, context: Sequence[np.ndarray] | None = None, horizon: int = 64
                      ) -> list[float]:
        """Sets the scratchpad budget: every router's threshold is calibrated so that ``fraction`` of the patch
        tokens of ``context`` (series like :meth:`predict`'s, e.g. the histories about to be forecast; only
        their past is read) enter the scratchpad. Fraction 0 makes every layer a pure Gated DeltaNet, 1 full
        attention; those need no context. The tokens counted are each series' own (context and forecast) in the
        model's fixed window, as :meth:`predict` forms it: a series shorter than ``context_length`` is
        left-padded, and its padding neither enters the scratchpad nor counts.

        Returns:
            the threshold per router. Undo by reloading the pipeline.
        """
        from tsham.ham import calibrate_kv_budget

        if context is None and fraction not in (0.0, 1.0):
            raise ValueError("set_kv_budget: a fraction strictly between 0 and 1 needs context series to "
                             "calibrate the threshold on")
        if context is None:
            return calibrate_kv_budget(self.model, fraction, lambda: None)
        series = as_series(context, "set_kv_budget: context")
        self._check_targets(series)
        batch = self._left_pad(series, self.model.config.context_length)  # one forward: one batch quantile
        return calibrate_kv_budget(self.model, fraction, lambda: self.model(batch, horizon))

    @torch.no_grad()
    def kv_fraction(self, context: Sequence[np.ndarray], horizon: int = 64) -> float:
        """The realised scratchpad fraction on ``context``: the share of the series' own patch tokens routed
        (padding excluded), pooled over every series, as :meth:`set_kv_budget` counts them, per layer (over its
        heads), then averaged over layers. Does not depend on how the series are batched."""
        series = as_series(context, "kv_fraction: context")
        self._check_targets(series)
        routed = possible = 0.0
        for rows in self._chunks(len(series)):
            batch = self._left_pad([series[i] for i in rows], self.model.config.context_length)  # as predict pads
            layers = self.model(batch, horizon).layers
            routed = routed + torch.stack([d.mask.sum() for d in layers]).double()
            possible = possible + torch.stack([d.routable().sum() * d.mask.shape[-1] for d in layers]).double()
        return float((routed / possible.clamp_min(1)).mean())

    @torch.no_grad()
    def routing_map(self, series: np.ndarray, horizon: int) -> np.ndarray:
        """Per context step of one series ``[T]``: share of layers and heads whose scratchpad holds its patch.

        Only the last ``context_length`` steps are seen; earlier steps get 0.
        """
        series = as_series(series, "routing_map: series")
        if len(series) != 1:
            raise ValueError(f"routing_map: give one series; got {len(series)}")
        series = series[0]
        self._check_targets([series])
        C = self.model.config.context_length  # padded as predict pads it
        T = min(len(series), C)
        out = self.model(self._left_pad([series], C), horizon)
        P = self.model.config.patch.patch_length
        share = torch.stack([d.mask[0].float().mean(-1) for d in out.layers]).mean(0)  # (N,) over patch tokens
        # a token's share for each of its steps; "end" left-pads the context to whole patches, "start" cuts from
        # its first step and leaves the last C % P steps to the first future token
        per_step = share.repeat_interleave(P).cpu().numpy()
        end = self.model.config.align == "end"
        steps = (per_step[: out.num_context_patches * P][-C:] if end else per_step[:C])[-T:]
        full = np.zeros(len(series), dtype=np.float32)
        full[len(series) - T:] = steps
        return full

    def _check_horizon(self, horizon) -> None:
        """Before any work (a negative horizon would otherwise fail deep in numpy)."""
        top = self.model.config.max_horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or not 0 < horizon <= top:
            raise ValueError(f"horizon must lie in 1..{top} (a whole number of steps); got {horizon!r}")

    @staticmethod
    def _check_targets(series: list[np.ndarray], names: Sequence | None = None) -> None:
        for i, s in enumerate(series):
            name = f"series {names[i]!r}" if names is not None else f"series {i}"
            if len(s) == 0 or np.isnan(s).all():
                raise ValueError(f"{name} is empty or all NaN: nothing to forecast from")
            if np.isinf(s).any():
                raise ValueError(f"{name} contains inf; use NaN for missing values")

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
            df: one row per (series, time step) with ``id_column`` (a table without it is one series, named
                ``"series"``), ``timestamp_column`` (dates, or integer time steps), ``target`` and the covariate
                columns (NaN = missing); any row order. Missing steps are
                rows with an empty target, not absent rows: each series' timestamps must be regular.
            horizon: steps ahead. freq: pandas frequency of the future timestamps (for integer steps: the step);
                inferred per series if None.
            past_covariates: columns of df known only up to now.
            future_covariates: columns known ahead: df holds their past, ``future_df`` (id, timestamp and these
                columns) exactly ``horizon`` future rows per series.

        Returns:
            One row per (series, future step): ``id_column``, ``timestamp_column``, one column per quantile
            level (named ``"0.1"`` ...), and ``"predictions"`` (the median).
        """
        self._check_horizon(horizon)
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"predict_df: df must be a pandas DataFrame in long form (id, timestamp, target); got "
                            f"{type(df).__name__} (for arrays use predict)")
        if id_column not in df.columns and future_df is not None and id_column not in future_df.columns:
            future_df = future_df.assign(**{id_column: "series"})  # the one series' future rows
        df = long_frame(df, id_column, timestamp_column, target)  # no id column: one series, as the CLI reads it
        if future_covariates and future_df is None:
            raise ValueError("predict_df: future_covariates need future_df with their values over the horizon")
        if future_df is not None and not future_covariates:
            raise ValueError("predict_df: future_df is given but no future_covariates name its columns; pass "
                             "future_covariates=[...] (nothing is inferred from the extra columns)")
        groups = long_series(df, id_column, timestamp_column, target, [*past_covariates, *future_covariates])
        stamps = [future_stamps(g[timestamp_column], horizon, freq, item) for item, g in groups]
        futures = self._future_rows(future_df, groups, stamps, id_column, timestamp_column, list(future_covariates))
        quantiles = self._predict(
            [g[target].to_numpy(np.float32) for _, g in groups], horizon,
            past_covariates=[g[list(past_covariates)].to_numpy(np.float32) for _, g in groups]
            if past_covariates else None,
            future_covariates=[np.concatenate([g[list(future_covariates)].to_numpy(np.float32), f])
                               for (_, g), f in zip(groups, futures, strict=True)] if future_covariates else None,
            names=[item for item, _ in groups],
        )  # (B, Q, H)
        frames = []
        for (item, _), future, q in zip(groups, stamps, quantiles, strict=True):
            frame = pd.DataFrame({id_column: item, timestamp_column: future})
            for level, values in zip(self.quantiles, q, strict=True):
                frame[str(level)] = values
            frame["predictions"] = q[self.quantiles.index(0.5)]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _future_rows(future_df, groups, stamps, id_column, timestamp_column, columns) -> list[np.ndarray]:
        """Per series, the ``[horizon, Cf]`` future covariate values from future_df, whose rows must carry the
        forecast's own timestamps ``stamps``."""
        if not columns:
            return [np.zeros((len(future), 0), np.float32) for future in stamps]
        try:
            by_id = dict(long_series(future_df, id_column, timestamp_column, columns[0], columns[1:]))
        except ValueError as err:
            raise ValueError(f"predict_df: future_df: {err}") from None
        rows = []
        for (item, _), future in zip(groups, stamps, strict=True):
            g = by_id.get(item)
            if g is None or len(g) != len(future):
                raise ValueError(f"predict_df: future_df must hold exactly {len(future)} rows for series {item!r}; "
                                 f"it has {0 if g is None else len(g)}")
            if list(g[timestamp_column]) != list(future):
                raise ValueError(f"predict_df: future_df's timestamps for series {item!r} "
                                 f"({g[timestamp_column].iloc[0]} ..) are not the forecast's ({future[0]} .. "
                                 f"{future[-1]})")
            rows.append(g[columns].to_numpy(np.float32))
        return rows
