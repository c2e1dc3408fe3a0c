"""Validation on held-out tails: fixed windows, periodic scoring, the best weights kept and exported."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import torch

from tsham.training.data import PoolSeries, WindowStream


def split_tails(pool: list[PoolSeries], holdout: int, context_length: int, horizon: int, windows: int,
                batch_size: int, seed: int) -> tuple[list[PoolSeries], list[dict[str, torch.Tensor]]]:
    """Holds out the last ``holdout`` steps of every series.

    Returns:
        the training pool (each series without its tail; series left shorter than ``horizon + 1`` steps are
        dropped) and fixed validation batches: about ``windows`` windows whose ``horizon`` future lies inside a
        tail (their past may reach back into the training part, as in the LTSF protocol's validation split),
        drawn once from ``seed`` so every validation scores the same windows.

    Raises:
        ValueError if ``holdout < horizon`` or no series keeps enough steps to train on.
    """
    if holdout < horizon:
        raise ValueError(f"validation_steps={holdout} is shorter than the training horizon {horizon}: "
                         "no validation window fits in the held-out tail")
    train_pool = [s.head(len(s.target) - holdout) for s in pool if len(s.target) - holdout > horizon]
    if not train_pool:
        longest = max(len(s.target) for s in pool)
        raise ValueError(f"validation_steps={holdout} leaves no series long enough to train on (longest series: "
                         f"{longest} steps, horizon {horizon})")
    stream = iter(WindowStream(pool, context_length, horizon, batch_size, seed=seed, tail=holdout))
    return train_pool, [next(stream) for _ in range(max(1, math.ceil(windows / batch_size)))]


def forecast_windows(model, batch: dict[str, torch.Tensor]):
    """``model``'s forecast (a :class:`TshamOutput`) of one :class:`WindowStream` batch, moved to the model's
    device; returns the output and the moved batch (its ``future_*`` fields for the loss)."""
    device = next(model.parameters()).device
    b = {k: v.to(device) for k, v in batch.items()}
    out = model(b["past_target"], b["future_target"].shape[1], past_observed_values=b["past_observed_values"],
                past_covariates=b.get("past_covariates"), event_flags=b.get("event_flags"))
    return out, b


@torch.no_grad()
def validation_loss(model, batches: list[dict[str, torch.Tensor]], on_output=None) -> float:
    """Pinball loss of ``model``'s forecasts over fixed batches (:class:`WindowStream` fields; the routers'
    auxiliary losses left out), each batch weighted by its windows, in eval mode (the model's training mode is
    restored after). ``on_output(output, batch)``, if given, sees every forward (e.g. to measure routing)."""
    was_training = model.training
    model.eval()
    total, windows = 0.0, 0
    for batch in batches:
        out, b = forecast_windows(model, batch)
        n = b["past_target"].shape[0]
        total, windows = total + n * float(model.loss(out, b["future_target"], b["future_observed_values"],
                                                      aux=False)), windows + n
        if on_output is not None:
            on_output(out, b)
    model.train(was_training)
    return total / windows


class BestOnValidation(L.Callback):
    """Scores fixed validation batches before training and every ``every`` optimizer steps (pinball loss of the
    forecasts, no router auxiliary loss), keeps a copy of the best weights (buffers included: router thresholds),
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
                 calibrate=None, start_after: int = 0):
        self.batches, self.every, self.patience, self.path = batches, max(1, every), patience, Path(path)
        self.calibrate, self.start_after = calibrate, start_after
        self.best_step, self.best_loss, self.best_state, self.stale, self.last_step = 0, math.inf, None, 0, -1
        self.initial_loss = None  # the starting weights' score (fine-tuning must beat it to change them)

    def _validate(self, trainer, task) -> None:
        step = trainer.global_step
        if step == self.last_step or 0 < step < self.start_after:
            return
        if self.calibrate is not None:
            self.calibrate(task.model, self.batches[0])
        self.last_step, loss = step, validation_loss(task.model, self.batches)
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
        """What validation decided: the initial and best scores and the exported weights' step."""
        return {"initial_val_loss": self.initial_loss, "best_val_loss": self.best_loss, "best_step": self.best_step,
                "validations": self.path.name}

    def state_dict(self) -> dict:  # saved in Lightning's checkpoint, so a resumed run keeps its best so far
        return {"best_step": self.best_step, "best_loss": self.best_loss, "stale": self.stale,
                "initial_loss": self.initial_loss, "best_state": copy.copy(self.best_state)}

    def load_state_dict(self, state: dict) -> None:
        self.best_step, self.best_loss, self.stale = state["best_step"], state["best_loss"], state["stale"]
        self.initial_loss, self.best_state = state["initial_loss"], state["best_state"]
