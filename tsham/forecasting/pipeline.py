"""TshamPipeline: forecasts from arrays, tensors or a pandas long DataFrame (Chronos-style ``predict_df``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsham.checkpoint import load_checkpoint
from tsham.model import TshamModel


class TshamPipeline:
    """Inference around a trained :class:`TshamModel`.

    Examples::
        >>> pipe = TshamPipeline.load("path/to/checkpoint")
        >>> q = pipe.predict([np.sin(np.arange(200) / 5)], horizon=24)   # (1, Q, 24)
        >>> forecast_df = pipe.predict_df(df, horizon=24)                 # id, timestamp, 0.1 .. 0.9, mean
    """

    def __init__(self, model: TshamModel, device: str | torch.device = "cpu", batch_size: int = 64):
        self.model = model.to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64) -> TshamPipeline:
        """A pipeline around the checkpoint folder at ``path``."""
        return cls(load_checkpoint(path, device), device, batch_size)

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.config.head.quantiles

    @torch.no_grad()
    def predict(self, context: Sequence[np.ndarray] | np.ndarray | torch.Tensor, horizon: int) -> np.ndarray:
        """Quantile forecasts ``(B, Q, H)`` for univariate series of any lengths (NaN = missing).

        Args:
            context: a list of 1-D arrays (lengths may differ; shorter ones are left-padded as missing),
                a ``[B, T]`` array or tensor. Only the last ``config.context_length`` steps are used.
            horizon: steps to forecast (1 .. ``config.max_horizon``).
        """
        series = [np.asarray(s, dtype=np.float32).reshape(-1) for s in (context if not torch.is_tensor(context)
                                                                           else context.cpu().numpy())]
        if not series:
            raise ValueError("predict: no series given")
        out = []
        for start in range(0, len(series), self.batch_size):
            batch = self._stack(series[start:start + self.batch_size])
            out.append(self.model(batch[..., None], horizon).quantiles[:, 0].cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def routing_map(self, series: np.ndarray, horizon: int) -> np.ndarray:
        """Per context step of one series ``[T]``: share of layers and heads whose scratchpad holds its patch.

        Only the last ``context_length`` steps are seen; earlier steps get 0.
        """
        batch = self._stack([np.asarray(series, dtype=np.float32).reshape(-1)])
        out = self.model(batch[..., None], horizon)
        P, T = self.model.config.patch.patch_length, batch.shape[1]
        share = torch.stack([d.mask[0].float().mean(-1) for d in out.layers]).mean(0)  # (N,) over patch tokens
        steps = share[: out.num_context_patches].repeat_interleave(P)[-T:].cpu().numpy()  # drop the left pad
        full = np.zeros(len(series), dtype=np.float32)
        full[len(series) - T:] = steps
        return full

    def _stack(self, series: list[np.ndarray]) -> torch.Tensor:
        """Left-pads with NaN to a common length (at most context_length); rejects empty or all-NaN series."""
        L = self.model.config.context_length
        for i, s in enumerate(series):
            if len(s) == 0 or np.isnan(s).all():
                raise ValueError(f"series {i} is empty or all NaN: nothing to forecast from")
            if np.isinf(s).any():
                raise ValueError(f"series {i} contains inf; use NaN for missing values")
        T = min(L, max(len(s) for s in series))
        batch = np.full((len(series), T), np.nan, dtype=np.float32)
        for i, s in enumerate(series):
            s = s[-T:]
            batch[i, T - len(s):] = s
        return torch.from_numpy(batch).to(self.device)

    def predict_df(
        self,
        df: pd.DataFrame,
        horizon: int,
        id_column: str = "id",
        timestamp_column: str = "timestamp",
        target: str = "target",
        freq: str | None = None,
    ) -> pd.DataFrame:
        """Forecasts every series of a long DataFrame.

        Args:
            df: one row per (series, time step) with ``id_column``, ``timestamp_column`` and ``target``
                (NaN = missing); rows are sorted by time inside each series.
            horizon: steps ahead. freq: pandas frequency of the future timestamps; inferred per series if None.

        Returns:
            One row per (series, future step): ``id_column``, ``timestamp_column``, one column per quantile
            level (named ``"0.1"`` ...), and ``"predictions"`` (the median).
        """
        missing = [c for c in (id_column, timestamp_column, target) if c not in df.columns]
        if missing:
            raise ValueError(f"predict_df: columns {missing} not in the DataFrame (it has {list(df.columns)})")
        df = df.assign(**{timestamp_column: pd.to_datetime(df[timestamp_column])})
        df = df.sort_values([id_column, timestamp_column])
        groups = list(df.groupby(id_column, sort=False))
        quantiles = self.predict([g[target].to_numpy(np.float32) for _, g in groups], horizon)  # (B, Q, H)
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
