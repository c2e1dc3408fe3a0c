"""Validation on held-out tails: fixed windows, periodic scoring, the best weights kept and exported."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

from tsham.training.data import PoolSeries, WindowStream


def split_tails(pool: list[PoolSeries], holdout: int, context_length: int, horizon: int | Sequence[int],
                windows: int, batch_size: int, seed: int) -> tuple[list[PoolSeries], list[dict[str, torch.Tensor]]]:
    """Holds out the last ``holdout`` steps of every series.

    Returns:
        the training pool (each series without its tail; series left shorter than the longest ``horizon`` + 1
        steps are dropped) and fixed validation batches (:class:`WindowStream` dicts: ``past_target [B, L, Ct]``,
        ``future_target [B, H, Ct]``, ...) of about ``windows`` windows (at most, rounded up to whole batches, as
        many as the tails hold distinct ones) whose future lies inside a tail (their past
        may reach back into the training part, as in the LTSF protocol's validation split), drawn once from
        ``seed`` so every validation scores the same windows. Several horizons (a run that trains on several)
        share the windows out, at least one whole batch each so each counts alike, the longest first (budget-
        agnostic runs calibrate their routing on the first batch, as they did when only the longest was scored).

    Raises:
        ValueError if ``holdout`` is shorter than the longest horizon or no series keeps enough steps to train on.
    """
    horizons = [int(horizon)] if isinstance(horizon, int | np.integer) else sorted(set(map(int, horizon)),
                                                                                   reverse=True)
    longest = horizons[0]
    if holdout < longest:
        raise ValueError(f"validation_steps={holdout} is shorter than the training horizon {longest}: "
                         "no validation window fits in the held-out tail")
    train_pool = [s.head(len(s.target) - holdout) for s in pool if len(s.target) - holdout > longest]
    if not train_pool:
        raise ValueError(f"validation_steps={holdout} leaves no series long enough to train on (longest series: "
                         f"{max(len(s.target) for s in pool)} steps, horizon {longest})")
    batches = []
    for h in horizons:  # one stream per horizon, seeded apart (one horizon: the seed itself, as before horizons)
        # no more windows than the tails hold distinct ones: a few short series would otherwise score the same
        # windows over and over (3 series with 24-step tails and 512 windows took minutes per validation on a CPU)
        distinct = sum(max(0, min(holdout, len(s.target) - 1) - h + 1) for s in pool)
        per_horizon = max(1, math.ceil(min(windows / len(horizons), distinct) / batch_size))
        stream_seed = seed if len(horizons) == 1 else seed + h
        stream = iter(WindowStream(pool, context_length, h, batch_size, seed=stream_seed, tail=holdout))
        batches += [next(stream) for _ in range(per_horizon)]
    return train_pool, batches


def forecast_windows(model, batch: dict[str, torch.Tensor]):
    """``model``'s forecast (a :class:`TshamOutput`) of one :class:`WindowStream` batch, moved to the model's
    device; returns the output and the moved batch (its ``future_*`` fields for the loss)."""
    device = next(model.parameters()).device
    b = {k: v.to(device) for k, v in batch.items()}
    out = model(b["past_target"], b["future_target"].shape[1], past_observed_values=b["past_observed_values"],
                past_covariates=b.get("past_covariates"), event_flags=b.get("event_flags"))
    return out, b


VAL_METRICS = ("pinball", "mse")


def check_metric(metric: str, what: str = "validation metric") -> str:
    """``metric`` if it is one of :data:`VAL_METRICS`; else ValueError naming ``what`` was given."""
    if metric not in VAL_METRICS:
        raise ValueError(f"{what} must be one of {VAL_METRICS}; got {metric!r}")
    return metric


@torch.no_grad()
def validation_loss(model, batches: list[dict[str, torch.Tensor]], on_output=None, metric: str = "pinball") -> float:
    """``model``'s error over fixed batches (:class:`WindowStream` fields: ``future_target [B, H, C]``, ...): each
    batch's mean over its observed future values, the batches weighted by their windows ``B`` (a batch with no
    observed future value is left out), in eval mode (the model's training mode is restored after). ``metric``:
    "pinball", the quantile loss on the scaled future (the routers' auxiliary losses left out), or "mse", the
    median's squared error in the series' own units (the LTSF protocol's metric; on series of different scales the
    largest dominates). ``on_output(output, batch)``, if given, sees every forward (e.g. to measure routing)."""
    check_metric(metric)
    was_training = model.training
    model.eval()
    total, windows = 0.0, 0
    for batch in batches:
        out, b = forecast_windows(model, batch)
        if on_output is not None:
            on_output(out, b)
        n = b["past_target"].shape[0]
        if not b["future_observed_values"].any():
            continue
        if metric == "pinball":
            loss = float(model.loss(out, b["future_target"], b["future_observed_values"], aux=False))
        else:  # median [B, C, H] against future [B, H, C]
            seen = b["future_observed_values"].bool().permute(0, 2, 1)
            error = (out.median - b["future_target"].permute(0, 2, 1)).square()
            loss = float(error[seen].mean())
        total, windows = total + n * loss, windows + n
    model.train(was_training)
    return total / windows if windows else math.nan


def scored_windows(batches: list[dict[str, torch.Tensor]]) -> list[list[float]]:
    """What fixed validation batches score, as ``[horizon, windows, sum of the observed future values]`` per batch:
    equal for the same windows, different for others (a resumed run must validate on the same)."""
    return [[int(b["future_target"].shape[1]), int(b["future_target"].shape[0]),
             round(float(torch.where(b["future_observed_values"].bool(), b["future_target"], 0.0).double().sum()), 6)]
            for b in batches]


def describe_windows(scored: list[list[float]] | None) -> str:
    """``scored_windows`` in words, for an error message."""
    if scored is None:
        return "windows it did not record"
    horizons = sorted({int(h) for h, _, _ in scored}, reverse=True)
    return f"{sum(int(n) for _, n, _ in scored)} windows at horizons {horizons}"


class BestOnValidation(L.Callback):
    """Scores fixed validation batches before training and every ``every`` optimizer steps
    (:func:`validation_loss` by ``metric``), keeps a copy of the best weights (buffers included: router thresholds),
    loads them back when training ends, and stops after ``patience`` validations without improvement (0: never).
    Appends ``step,val_loss`` rows to ``path``. Single-process or DDP (each rank scores the same batches).

    Args:
        calibrate: ``calibrate(model, batch)`` sets the routing the model will be exported with before each
            validation (budget-agnostic training leaves the last batch's drawn budget in the thresholds).
        start_after: no validation between the first and this optimizer step (a KV-target warm-up routes more
            than the exported model will; its steps must not win).
    A NaN score never wins; if no validation is finite, training raises a clear error at its end.
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]], every: int, patience: int, path: Path,
                 calibrate=None, start_after: int = 0, metric: str = "pinball"):
        self.batches, self.every, self.patience, self.path = batches, max(1, every), patience, Path(path)
        self.metric, self.scored = check_metric(metric), scored_windows(batches)
        self.calibrate, self.start_after = calibrate, start_after
        self.best_step, self.best_loss, self.best_state, self.stale, self.last_step = 0, math.inf, None, 0, -1
        self.initial_loss = None  # the starting weights' score (fine-tuning must beat it to change them)

    def _validate(self, trainer, task) -> None:
        step = trainer.global_step
        if step == self.last_step or 0 < step < self.start_after:
            return
        if self.calibrate is not None:
            self.calibrate(task.model, self.batches[0])
        self.last_step, loss = step, validation_loss(task.model, self.batches, metric=self.metric)
        if self.initial_loss is None:
            self.initial_loss = loss
        if trainer.is_global_zero:
            with self.path.open("a") as f:
                f.write(f"{step},{loss:.6f}\n")
        if loss < self.best_loss:  # False for NaN
            self.best_step, self.best_loss, self.stale = step, loss, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in task.model.state_dict().items()}
        else:
            self.stale += 1
        stop = bool(self.patience) and self.stale >= self.patience
        if trainer.strategy.reduce_boolean_decision(stop, all=True):
            trainer.should_stop = True

    def on_train_start(self, trainer, task):
        if trainer.is_global_zero and not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("step,val_loss\n")
        if self.initial_loss is None:  # a fresh run: the starting weights are the first candidate
            self._validate(trainer, task)

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0 and trainer.global_step % self.every == 0:
            self._validate(trainer, task)

    def on_train_end(self, trainer, task):
        self._validate(trainer, task)  # the final weights compete too
        if self.best_state is None:
            raise ValueError(f"validation: no finite validation loss in {self.path} (the model diverged or the "
                             "held-out windows hold no observed target); lower the learning rate or check the data")
        task.model.load_state_dict(self.best_state)

    def summary(self) -> dict:
        """What validation decided: the metric, the initial and best scores and the exported weights' step."""
        return {"metric": self.metric, "initial_val_loss": self.initial_loss, "best_val_loss": self.best_loss,
                "best_step": self.best_step, "validations": self.path.name}

    def state_dict(self) -> dict:  # saved in Lightning's checkpoint, so a resumed run keeps its best so far
        return {"best_step": self.best_step, "best_loss": self.best_loss, "stale": self.stale,
                "initial_loss": self.initial_loss, "best_state": copy.copy(self.best_state),
                "metric": self.metric, "scored": self.scored}

    def load_state_dict(self, state: dict) -> None:
        """A resumed run's best so far. Raises ValueError when it was scored otherwise (another metric, or other
        windows: --val-metric, --val-windows, --horizons or --validation-steps changed): its best score could not
        be compared with the new ones. Checkpoints from before the metric was recorded scored the pinball loss."""
        metric, scored = state.get("metric", "pinball"), state.get("scored")
        if metric != self.metric or (scored is not None and scored != self.scored):
            raise ValueError(f"resume: the run validated by {metric} on {describe_windows(scored)}; this resume "
                             f"would validate by {self.metric} on {describe_windows(self.scored)}, and its best "
                             "score so far could not be compared: resume with the run's validation options, or "
                             "start a fresh run")
        self.best_step, self.best_loss, self.stale = state["best_step"], state["best_loss"], state["stale"]
        self.initial_loss, self.best_state = state["initial_loss"], state["best_state"]
