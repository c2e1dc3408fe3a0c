"""Training batches from a pool of series with GluonTS field names."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from tsham.patch import ChannelRole
from tsham.series import sample_windows


@dataclass
class PoolSeries:
    """One training series: targets ``[T, Ct]``, past covariates ``[T, Cp]``, event flags ``[T, F]`` (NaN = missing)."""

    target: np.ndarray
    past_covariates: np.ndarray
    flags: np.ndarray

    @classmethod
    def from_synthetic(cls, s) -> PoolSeries:
        """From a :class:`tsham.datasets.SyntheticSeries` (its roles say which channels are targets)."""
        roles = np.array([int(r) for r in s.roles])
        return cls(s.values[:, roles == ChannelRole.TARGET], s.values[:, roles != ChannelRole.TARGET], s.flags)

    @classmethod
    def from_array(cls, values: np.ndarray) -> PoolSeries:
        """A target-only series ``[T]`` or ``[T, C]``."""
        values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
        return cls(values, np.zeros((len(values), 0), np.float32), np.zeros((len(values), 0), np.float32))

    def head(self, steps: int) -> PoolSeries:
        """The first ``steps`` time steps (the training part when the last steps are held out)."""
        return PoolSeries(self.target[:steps], self.past_covariates[:steps], self.flags[:steps])

    @property
    def signature(self) -> tuple[int, int, int]:
        return self.target.shape[1], self.past_covariates.shape[1], self.flags.shape[1]


class WindowStream(IterableDataset):
    """Endless batches of training windows; each batch comes from series of one channel layout.

    Yields dicts: ``past_target [B, L, Ct]``, ``past_observed_values``, ``future_target [B, H, Ct]``,
    ``future_observed_values``, and, where the layout has them, ``past_covariates [B, L, Cp]`` and
    ``event_flags [B, L, F]`` (context only: flags are not assumed known ahead in generic pretraining).
    ``tail``: forecast only the last ``tail`` steps of each series (validation windows; see ``sample_windows``).
    """

    def __init__(self, pool: list[PoolSeries], context_length: int, horizon: int | Sequence[int], batch_size: int,
                 seed: int = 0, tail: int | None = None):
        if not pool:
            raise ValueError("WindowStream: the series pool is empty")
        self.horizons = [horizon] if isinstance(horizon, int) else list(horizon)
        if not self.horizons or min(self.horizons) <= 0:
            raise ValueError(f"WindowStream: horizons must be positive; got {horizon}")
        self.groups = defaultdict(list)  # layout -> series as one [T, Ct + Cp + F] array each, joined once
        for i, s in enumerate(pool):
            if any(np.isinf(a).any() for a in (s.target, s.past_covariates, s.flags)):
                raise ValueError(f"WindowStream: series {i} of the pool contains inf; use NaN for missing values")
            self.groups[s.signature].append(np.concatenate([s.target, s.past_covariates, s.flags], -1))
        if all(np.isnan(s.target).all() for s in pool):  # every loss would be empty: training would learn nothing
            raise ValueError("WindowStream: no series of the pool has an observed target value (all NaN)")
        self.context_length, self.batch_size, self.seed, self.tail = context_length, batch_size, seed, tail

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        # every (process, worker) pair draws its own windows: under DDP, equal streams would waste the ranks
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() \
            else 0
        rng = np.random.default_rng([self.seed, rank, worker.id if worker else 0])
        keys = list(self.groups)
        weights = np.array([len(self.groups[k]) for k in keys], dtype=float)
        while True:
            key = keys[rng.choice(len(keys), p=weights / weights.sum())]
            yield self._batch(self.groups[key], key, rng)

    def stratified(self, windows: int, max_batch: int = 64) -> list[dict]:
        """Fixed evaluation batches in which every channel layout gets windows in proportion to its series (at
        least one each), at most ``max_batch`` per batch: unlike the endless stream, a small evaluation set
        cannot miss a rare layout (e.g. the flagged one)."""
        rng = np.random.default_rng([self.seed, 1])
        total = sum(len(g) for g in self.groups.values())
        batches = []
        for key, joined in self.groups.items():
            left = max(1, round(windows * len(joined) / total))
            while left > 0:
                size = min(left, max_batch)
                batches.append(self._batch(joined, key, rng, size))
                left -= size
        return batches

    def _batch(self, joined: list[np.ndarray], key: tuple[int, int, int], rng: np.random.Generator,
               size: int | None = None) -> dict:
        ct, cp, _ = key
        horizon = self.horizons[rng.integers(len(self.horizons))] if len(self.horizons) > 1 else self.horizons[0]
        w = sample_windows(joined, self.context_length, horizon, size or self.batch_size, rng, tail=self.tail)
        batch = {
            "past_target": w["past_target"][..., :ct], "past_observed_values": w["past_observed_values"][..., :ct],
            "future_target": w["future_target"][..., :ct],
            "future_observed_values": w["future_observed_values"][..., :ct],
        }
        if cp:
            past = w["past_target"][..., ct:ct + cp]
            batch["past_covariates"] = torch.where(w["past_observed_values"][..., ct:ct + cp] > 0, past, torch.nan)
        if key[2]:
            batch["event_flags"] = w["past_target"][..., ct + cp:]
        return batch
