"""Training on Lightning: AdamW groups, warm-up + cosine schedule, clipping, bf16 on GPU, KV-target warm-up."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from tsham.checkpoint import save_checkpoint
from tsham.config import TshamConfig
from tsham.model import TshamModel
from tsham.training.data import PoolSeries, WindowStream
from tsham.training.optim import make_optimizer


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
    seed: int = 0
    log_every: int = 10


class ForecastTask(L.LightningModule):
    """The Lightning wrapper around :class:`TshamModel` (the model itself stays Lightning-free)."""

    def __init__(self, model_config: TshamConfig, train_config: TrainConfig):
        super().__init__()
        self.model = TshamModel(model_config)
        self.train_config = train_config
        self.routers = [b.mixer.router for b in self.model.stack.blocks if b.mixer.router.target is not None]
        self.final_targets = [r.target for r in self.routers]

    def on_train_batch_start(self, batch, batch_idx):
        c = self.train_config
        if c.kv_warmup_steps:
            mix = min(1.0, self.global_step / c.kv_warmup_steps)
            for router, final in zip(self.routers, self.final_targets, strict=True):
                router.target = (1 - mix) * max(c.kv_target_start, final) + mix * final

    def on_train_end(self):
        for router, final in zip(self.routers, self.final_targets, strict=True):
            router.target = final  # a run shorter than the warm-up must not export an intermediate target

    def training_step(self, batch, batch_idx):
        out = self.model(batch["past_target"], self.train_config.horizon,
                         past_observed_values=batch["past_observed_values"],
                         past_covariates=batch.get("past_covariates"), event_flags=batch.get("event_flags"))
        loss = self.model.loss(out, batch["future_target"], batch["future_observed_values"])
        self.log("loss", loss, prog_bar=True, batch_size=batch["past_target"].shape[0])
        self.log("kv", out.kv_fraction, prog_bar=True, batch_size=batch["past_target"].shape[0])
        return loss

    def configure_optimizers(self):
        c = self.train_config
        opt = make_optimizer(self.model, c.lr, c.weight_decay)

        def schedule(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train(
    model_config: TshamConfig,
    train_config: TrainConfig,
    pool: list[PoolSeries],
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    init_from: TshamModel | None = None,
    frozen: tuple[str, ...] = (),
) -> TshamModel:
    """Trains and exports ``out_dir/model`` (safetensors + config); ``out_dir/lightning`` holds resumable state.

    Args:
        pool: training series. resume: continue from ``out_dir/lightning/last.ckpt`` (Lightning's own format:
            only resume your own runs; the exported model is the file to share). init_from: start from these
            weights (fine-tuning). frozen: parameter-name prefixes to keep fixed (e.g. ``("encoder.",)``).

    Returns:
        the trained model (eval mode, on the CPU).
    """
    out_dir = Path(out_dir)
    L.seed_everything(train_config.seed, verbose=False)
    task = ForecastTask(model_config, train_config)
    if init_from is not None:
        task.model.load_state_dict(init_from.state_dict())
    for name, p in task.model.named_parameters():
        p.requires_grad_(not name.startswith(frozen) if frozen else True)
    stream = WindowStream(pool, model_config.context_length, train_config.horizon, train_config.batch_size,
                          train_config.seed)
    gpu = torch.cuda.is_available()
    trainer = L.Trainer(
        max_steps=train_config.steps, accelerator="gpu" if gpu else "cpu", devices=1,
        precision="bf16-mixed" if gpu else "32-true", gradient_clip_val=train_config.grad_clip,
        enable_progress_bar=progress, enable_model_summary=False, logger=False,
        log_every_n_steps=train_config.log_every, default_root_dir=out_dir,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir / "lightning", save_last=True,
                                                       every_n_train_steps=max(1, train_config.steps // 10))],
    )
    ckpt = out_dir / "lightning" / "last.ckpt"
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
    trainer.fit(task, DataLoader(stream, batch_size=None), ckpt_path=ckpt if resume else None)
    model = task.model.cpu().eval()
    save_checkpoint(model, out_dir / "model")
    (out_dir / "model" / "train_config.json").write_text(json.dumps(asdict(train_config), indent=1))
    return model
