"""Training on Lightning: AdamW groups, warm-up + cosine schedule, clipping, bf16 on GPU, KV-target warm-up."""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from tsham.checkpoint import save_checkpoint
from tsham.config import TshamConfig
from tsham.ham import budgetable_routers, calibrate_kv_budget
from tsham.heads import carry_scores
from tsham.model import TshamModel
from tsham.training.data import PoolSeries, WindowStream
from tsham.training.optim import make_optimizer
from tsham.training.validation import BestOnValidation, check_metric, forecast_windows, split_tails


@dataclass
class TrainConfig:
    """One training run (saved beside the exported model)."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # windows per step
    horizon: int = 64  # forecast steps per window
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.1  # on matrices only (see param_groups)
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10% of lr
    grad_clip: float = 1.0  # global norm
    kv_warmup_steps: int = 0  # routers with a target start at kv_target_start and reach their target linearly
    kv_target_start: float = 0.5
    # Budget-agnostic training: each batch draws one of these fractions and every budgetable router routes
    # exactly that fraction of the batch (its own quantile), so one model serves every inference budget
    # (see tsham.ham.calibrate_kv_budget). Empty: the routers' own targets / controller.
    kv_budgets: tuple[float, ...] = ()
    # Each batch draws its forecast horizon from these (empty: always ``horizon``).
    horizons: tuple[int, ...] = ()
    # Patches cut from the context's start (align="start") after dropping 0..P-1 leading steps per batch, so
    # the last patch is partial as often as in a stream that forecasts at any step (StreamingForecaster).
    align_jitter: bool = False
    seed: int = 0
    log_every: int = 10
    # Wall-clock budget: training stops after this many minutes and the schedule runs on whichever of steps
    # and time is further along, so a fixed-time run still warms up and decays fully. Single process only
    # (ranks would disagree on the time and so on the learning rate).
    max_minutes: float | None = None
    # Micro-batches per optimizer step (gradient accumulation): the step sees accumulate x batch_size windows.
    # The KV budget and the alignment jitter are drawn once per optimizer step, as DDP's ranks share them.
    accumulate: int = 1
    # Validation: hold out the last validation_steps of every series, score val_windows fixed windows there (shared
    # out among the training horizons) every val_every steps, export the best weights (the starting ones included),
    # and stop after `patience` validations without improvement (0: run all steps). val_metric: "pinball" (the
    # training loss) or "mse" (the median's squared error in the series' units: pick it when a point forecast's MSE
    # is what will be scored, as under the LTSF protocol)
    validation_steps: int = 0
    val_every: int = 100
    val_windows: int = 512
    val_metric: str = "pinball"
    patience: int = 0

    def __post_init__(self):  # here, not when training starts: by then a fresh run has cleared its folder's logs
        check_metric(self.val_metric, "TrainConfig.val_metric")


class ForecastTask(L.LightningModule):
    """The Lightning wrapper around :class:`TshamModel` (the model itself stays Lightning-free)."""

    def __init__(self, model_config: TshamConfig, train_config: TrainConfig):
        super().__init__()
        self.model = TshamModel(model_config)
        self.train_config = train_config
        self.routers = [b.mixer.router for b in self.model.stack.blocks if b.mixer.router.target is not None]
        self.final_targets = [r.target for r in self.routers]
        self.budget_routers = budgetable_routers(self.model) if train_config.kv_budgets else []
        if train_config.kv_budgets and not self.budget_routers:
            raise ValueError("TrainConfig.kv_budgets needs a router that takes a budget (surprise, uncertainty, "
                             "learned, random, composite max)")
        if any(r.target is None for r in self.budget_routers):
            raise ValueError("TrainConfig.kv_budgets: every router needs a target (the budget the exported model "
                             "is calibrated to), e.g. router_kwargs={'target': 0.1}")
        self.export_targets = [r.target for r in self.budget_routers]
        self.budget_rng = np.random.default_rng(train_config.seed)
        self.drop = 0  # leading context steps dropped this optimizer step (align_jitter)
        if train_config.accumulate < 1:
            raise ValueError(f"TrainConfig.accumulate must be >= 1; got {train_config.accumulate}")
        self.started = None  # wall clock of the first step (for max_minutes)

    def on_train_start(self):
        # a resumed run's clock goes on from the time trained before (Lightning's Timer restores it), so a
        # max_minutes schedule still decays fully over the whole run
        timer = next((c for c in self.trainer.callbacks if isinstance(c, L.pytorch.callbacks.Timer)), None)
        self.started = time.monotonic() - (timer.time_elapsed("train") if timer is not None else 0.0)
        if self.train_config.max_minutes and self.trainer.world_size > 1:
            raise ValueError("TrainConfig.max_minutes is single-process only: under DDP give steps instead")

    def on_train_batch_start(self, batch, batch_idx):
        c = self.train_config
        if batch_idx % c.accumulate:
            return  # a later micro-batch of this optimizer step: same budget and jitter as its first
        if c.kv_budgets:
            fraction = float(self.budget_rng.choice(c.kv_budgets))
            for router in self.budget_routers:
                router.retarget(fraction)
        elif c.kv_warmup_steps:
            mix = min(1.0, self.global_step / c.kv_warmup_steps)
            for router, final in zip(self.routers, self.final_targets, strict=True):
                router.target = (1 - mix) * max(c.kv_target_start, final) + mix * final
        if c.align_jitter:
            self.drop = int(self.budget_rng.integers(self.model.config.patch.patch_length))

    def on_train_end(self):
        for router, final in zip(self.routers, self.final_targets, strict=True):
            router.target = final  # a run shorter than the warm-up must not export an intermediate target
        for router, final in zip(self.budget_routers, self.export_targets, strict=True):
            router.target = final

    def training_step(self, batch, batch_idx):
        align = None
        if self.train_config.align_jitter:
            align, drop = "start", self.drop
            batch = {k: v[:, drop:] if k.startswith("past") or k == "event_flags" else v for k, v in batch.items()}
        out = self.model(batch["past_target"], batch["future_target"].shape[1],
                         past_observed_values=batch["past_observed_values"],
                         past_covariates=batch.get("past_covariates"), event_flags=batch.get("event_flags"),
                         align=align)
        loss = self.model.loss(out, batch["future_target"], batch["future_observed_values"])
        self.log("loss", loss, prog_bar=True, batch_size=batch["past_target"].shape[0])
        self.log("kv", out.kv_fraction, prog_bar=True, batch_size=batch["past_target"].shape[0])
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning's clipping, except under FSDP, where the root FSDP module clips by the global norm."""
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            # Lightning refuses norm clipping under FSDP (a per-rank norm would be wrong); the root FSDP module
            # computes the global norm over every shard.
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"under FSDP only norm clipping is supported; got {gradient_clip_algorithm!r}")
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        c = self.train_config
        # not fused: Lightning's mixed-precision gradient clipping refuses optimizers that unscale internally
        opt = make_optimizer(self.model, c.lr, c.weight_decay, fused=False)

        def schedule(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
            if c.max_minutes and self.started is not None:
                progress = max(progress, (time.monotonic() - self.started) / (60 * c.max_minutes))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class History(L.Callback):
    """Appends ``step, loss, kv, tokens, seconds`` to a CSV every ``every`` steps (rank 0; tokens = patch tokens
    this rank has seen, context plus horizon)."""

    def __init__(self, path: Path, every: int, patch_length: int):
        self.path, self.every, self.patch_length = Path(path), max(1, every), patch_length
        self.tokens, self.started, self.written = 0, None, -1

    def on_train_start(self, trainer, task):
        self.started = time.monotonic()
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.is_file():
                self.path.write_text("step,loss,kv,tokens,seconds\n")
            rows = self.path.read_text().splitlines()
            if len(rows) > 1:  # a resumed run: its tokens and seconds go on from the last row
                *_, tokens, seconds = rows[-1].split(",")
                self.tokens, self.started = int(tokens), self.started - float(seconds)

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        past, future = batch["past_target"], batch["future_target"]
        self.tokens += past.shape[0] * -(-(past.shape[1] + future.shape[1]) // self.patch_length)
        if trainer.global_step % self.every == 0:
            self._write(trainer)

    def on_train_end(self, trainer, task):
        self._write(trainer)  # the last step, wherever steps or time stopped the run

    def _write(self, trainer):
        if not trainer.is_global_zero or trainer.global_step == self.written:
            return
        self.written = trainer.global_step
        metrics = trainer.callback_metrics
        loss, kv = (float(metrics[k]) if k in metrics else float("nan") for k in ("loss", "kv"))
        with self.path.open("a") as f:
            f.write(f"{trainer.global_step},{loss:.5f},{kv:.4f},{self.tokens},{time.monotonic() - self.started:.2f}\n")


def train(
    model_config: TshamConfig,
    train_config: TrainConfig,
    pool: list[PoolSeries],
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    init_from: TshamModel | None = None,
    frozen: tuple[str, ...] = (),
    devices: int | str = 1,
    strategy: str = "auto",
    callbacks: tuple = (),
) -> TshamModel:
    """Trains and exports ``out_dir/model`` (safetensors + config); ``out_dir/lightning`` holds resumable state.

    Args:
        pool: training series. resume: continue from ``out_dir/lightning/last.ckpt`` (Lightning's own format:
            only resume your own runs; the exported model is the file to share). init_from: start from these
            weights (fine-tuning). frozen: parameter-name prefixes to keep fixed (e.g. ``("encoder.",)``).
        devices, strategy: Lightning's, e.g. ``devices=2, strategy="ddp"`` for data parallelism (each rank
            draws its own windows; ``batch_size`` is per rank). Under torchrun, give the world size.
            ``strategy="fsdp"`` shards parameters, gradients and optimizer state per HAM block instead
            (:func:`make_strategy`; GPUs only).
        callbacks: extra Lightning callbacks (e.g. early stopping or your own logging).

    ``out_dir/history.csv`` logs step, loss, realised KV fraction, patch tokens seen and seconds (rank 0).
    With ``train_config.validation_steps``, ``out_dir/validation.csv`` logs the validation loss and the export
    holds the best-scoring weights (``model/validation.json`` says which step).

    Returns:
        the trained model (eval mode, on the CPU) on rank 0; None on the other ranks of a multi-process run.
    """
    out_dir = Path(out_dir)
    L.seed_everything(train_config.seed, verbose=False)
    task = ForecastTask(model_config, train_config)
    if init_from is not None:  # a prior (or a part of one) the start model lacks starts fresh; all else must match
        state = init_from.state_dict()
        if init_from.prior is not None and task.model.prior is not None:  # candidates added keep the learned ones
            state = carry_scores(state, init_from.config.prior, model_config.prior)
        missing, unexpected = task.model.load_state_dict(state, strict=False)
        start = init_from.config.prior
        parts = (("step_score", start.per_step), ("spread_scale", start.spread))
        fresh = ("prior.",) if init_from.prior is None else tuple(f"prior.{p}." for p, has in parts if not has)
        missing = [k for k in missing if not k.startswith(fresh)]
        if missing or unexpected:
            raise ValueError(f"init_from does not fit model_config: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}")
    for name, p in task.model.named_parameters():
        p.requires_grad_(not name.startswith(frozen) if frozen else True)
    if not resume:  # a fresh run starts fresh logs (a resumed one appends to its own) and no stale summary
        for log in ("history.csv", "validation.csv", "model/validation.json"):
            (out_dir / log).unlink(missing_ok=True)
    validation = None
    if train_config.validation_steps:
        if strategy == "fsdp" or type(strategy).__name__ == "FSDPStrategy":
            raise ValueError("TrainConfig.validation_steps is not supported under FSDP (sharded weights); use ddp")
        pool, batches = split_tails(pool, train_config.validation_steps, model_config.context_length,
                                    train_config.horizons or train_config.horizon, train_config.val_windows,
                                    train_config.batch_size, seed=train_config.seed + 7919)
        validation = BestOnValidation(
            batches, train_config.val_every, train_config.patience, out_dir / "validation.csv",
            metric=train_config.val_metric,
            calibrate=partial(_export_routing, targets=task.export_targets) if train_config.kv_budgets else None,
            start_after=0 if train_config.kv_budgets else train_config.kv_warmup_steps)
        callbacks = (*callbacks, validation)
    ckpt = out_dir / "lightning" / "last.ckpt"
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
    resumed_at = check_resumable(ckpt, task, train_config.lr) if resume else 0
    # a resumed run draws new windows: the stream's seed moves with the step it resumes at
    stream = WindowStream(pool, model_config.context_length, train_config.horizons or train_config.horizon,
                          train_config.batch_size, train_config.seed + 1_000_003 * resumed_at)
    gpu = torch.cuda.is_available()
    trainer = L.Trainer(
        max_steps=train_config.steps, max_time=None if train_config.max_minutes is None else
        timedelta(minutes=train_config.max_minutes), accelerator="gpu" if gpu else "cpu", devices=devices,
        strategy=make_strategy(strategy),
        precision="bf16-mixed" if gpu else "32-true", gradient_clip_val=train_config.grad_clip,
        accumulate_grad_batches=train_config.accumulate,
        enable_progress_bar=progress, enable_model_summary=False, logger=False,
        log_every_n_steps=train_config.log_every, default_root_dir=out_dir,
        # no version counter: a fresh run into an old folder overwrites last.ckpt, which --resume reads
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir / "lightning", save_last=True,
                                                       every_n_train_steps=max(1, train_config.steps // 10),
                                                       enable_version_counter=False),
                   History(out_dir / "history.csv", train_config.log_every, model_config.patch.patch_length),
                   *callbacks],
    )
    trainer.fit(task, DataLoader(stream, batch_size=None), ckpt_path=ckpt if resume else None)
    # Full weights: under FSDP this gathers the shards (a collective, so every rank calls it); else the module's own.
    state = trainer.strategy.lightning_module_state_dict()
    if not trainer.is_global_zero:
        return None  # under FSDP this rank holds only shards; rank 0 exports and returns the model
    model = TshamModel(model_config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model = model.to(task.device).eval()
    if train_config.kv_budgets:  # tau was set per batch: export one calibrated at the routers' own targets,
        # on the batch each validation calibrated on when there was one (the exported model is the validated one)
        batch = validation.batches[0] if validation is not None else next(iter(WindowStream(
            pool, model_config.context_length, train_config.horizon, train_config.batch_size, train_config.seed + 1)))
        _export_routing(model, batch, task.export_targets)
    model = model.cpu()
    broken = [name for name, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:  # e.g. a loss that went NaN: never export a model that forecasts NaN
        raise ValueError(f"training diverged: {len(broken)} weights are NaN or inf (e.g. {broken[:2]}); lower the "
                         f"learning rate or check the data (the last Lightning state is in {out_dir / 'lightning'})")
    save_checkpoint(model, out_dir / "model")
    (out_dir / "model" / "train_config.json").write_text(json.dumps(asdict(train_config), indent=1))
    if validation is not None:
        (out_dir / "model" / "validation.json").write_text(json.dumps(validation.summary(), indent=1))
    return model


def _export_routing(model: TshamModel, batch: dict, targets: list[float]) -> None:
    """Budget-agnostic runs: thresholds calibrated at the routers' export targets on ``batch`` (at export, and
    before each validation)."""
    calibrate_kv_budget(model, targets, lambda: forecast_windows(model, batch))


def make_strategy(strategy):
    """Lightning's strategy for a name: ``"fsdp"`` becomes a fully sharded strategy that wraps each
    :class:`HamBlock` (parameters, gradients and optimizer state sharded across ranks; checkpoints hold full
    state dicts, so resuming and exporting work at any world size). Other names and strategy objects pass
    through unchanged.

    Raises:
        ValueError for ``"fsdp"`` without CUDA (Lightning's FSDP runs on GPUs only; use ``"ddp"`` on CPUs).
    """
    if strategy != "fsdp":
        return strategy
    if not torch.cuda.is_available():
        raise ValueError("strategy='fsdp' needs CUDA GPUs (Lightning's FSDP runs on GPUs only); use 'ddp' on CPUs")
    return fsdp_strategy()


def fsdp_strategy():
    """The FSDP strategy of :func:`make_strategy` (built without a GPU check, for tests).

    bf16 parameters and gradient reduction, as Lightning's bf16-mixed FSDP config has them, but fp32 buffers:
    in bf16 a router's threshold ``tau`` would round away the controller's small updates.
    ``use_orig_params`` keeps parameter names and attributes (the no-weight-decay tags of ``param_groups``).
    """
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import MixedPrecision

    from tsham.ham.block import HamBlock

    precision = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.float32)
    return FSDPStrategy(auto_wrap_policy={HamBlock}, state_dict_type="full", use_orig_params=True,
                        mixed_precision=precision)


def check_resumable(ckpt: Path, task: L.LightningModule, lr: float | None = None) -> int:
    """Before Lightning resumes from ``ckpt``: a truncated file, weights that do not fit this run's model (other
    arguments than the run that wrote it), or another peak learning rate ``lr`` than its schedule's (Lightning
    restores the schedule, so a new one would be ignored) are a ValueError naming the file, not a traceback from
    inside ``fit``. Returns the optimizer step it resumes at."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        saved, step = state["state_dict"], int(state.get("global_step", 0))
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
        raise ValueError(f"cannot resume from {ckpt}: it is truncated or not a Lightning checkpoint "
                         f"({type(err).__name__}: {err})") from None
    base = [b for s in state.get("lr_schedulers", []) for b in s.get("base_lrs", [])]
    if lr is not None and base and not all(math.isclose(b, lr, rel_tol=1e-6) for b in base):
        raise ValueError(f"cannot resume from {ckpt} with lr {lr:g}: its schedule peaks at {base[0]:g}, which a "
                         f"resumed run keeps; resume with --lr {base[0]:g}")
    expected = task.state_dict()
    wrong = [k for k, v in expected.items() if k not in saved or tuple(saved[k].shape) != tuple(v.shape)]
    extra = sorted(set(saved) - set(expected))
    if wrong or extra:
        differ = [*wrong, *extra]
        hint = "resume with that run's arguments"
        if all(k.startswith("model.prior.") for k in differ):  # `tsham train` adds the prior unless told not to
            absent = [k for k in wrong if k not in saved]
            if extra:
                hint = "that run has a seasonal prior: resume with its `--prior-lags` and `--prior-means`"
            elif absent:
                hint = "that run has no seasonal prior: resume with `--prior-lags` and no lags"
            else:  # both have a prior, with other candidates (e.g. a run from before the averaged ones)
                hint = ("that run's prior has other candidates: resume with its `--prior-lags`, `--prior-means` "
                        "(the flag alone: none) and `--context-length` (which decides the means a context can score)")
        raise ValueError(f"cannot resume from {ckpt}: it was written by a run with another model ({len(wrong)} "
                         f"weights missing or of another shape, {len(extra)} unexpected, e.g. {differ[:3]}); {hint}")
    return step
