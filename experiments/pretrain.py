"""Pretrains the model tsham ships as its default, on synthetic data plus wheel-embedded real series only.

    python -m tsham.experiments.pretrain --preset cpu-small --out runs/default [--install]
    python -m tsham.experiments.pretrain --install-from runs/default      # install an earlier run

Never trains on the eight evaluation configurations (ETTh1, ETTh2, M4 hourly, M4 weekly), so results on them
stay zero-shot. ``--install`` copies the exported model (matrices in fp16) into ``tsham/assets/default`` (the default of
``TshamPipeline.load()`` and ``tsham forecast``) with a card recording the data mix, steps, tokens seen, wall
time and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tsham.datasets import WHEEL_SETS, load, synthetic_mix
from tsham.experiments.common import header

from tsham.checkpoint import load_checkpoint, save_checkpoint
from tsham.config import TshamConfig
from tsham.heads import DEFAULT_LAGS, DEFAULT_MEANS, PriorConfig, parse_means
from tsham.training import PoolSeries, TrainConfig, train

PRESETS = {
    # Fits a 2-core CPU in about ten minutes: the interim default until a GPU-pretrained model replaces it.
    "cpu-small": dict(model=dict(d_model=64, patch_length=16, n_layers=2, num_heads=4, head_dim=16,
                                 router="surprise", router_kwargs={"target": 0.1}),
                      context_length=512, train=dict(steps=4000, batch_size=32, horizon=64, lr=2e-3,
                                                     warmup_steps=100, kv_warmup_steps=500),
                      synthetic=3000, series_length=2048),
    # The shipped default: one H100 for about seven minutes (see card.json). Budget-agnostic (each batch routes
    # one of kv_budgets, so the scoreboards can sweep the budget on one model) and horizon-agnostic (each batch
    # draws its horizon), exported at 10% KV.
    "gpu-small": dict(model=dict(d_model=128, patch_length=16, n_layers=4, num_heads=4, head_dim=32,
                                 router="surprise", router_kwargs={"target": 0.1}),
                      context_length=2048,
                      train=dict(steps=20000, max_minutes=6.5, batch_size=128, horizon=64, lr=1e-3,
                                 warmup_steps=300, horizons=(16, 48, 64, 128, 256, 480, 720),
                                 kv_budgets=(0.0, 0.05, 0.1, 0.25, 1.0), align_jitter=True),
                      align="start",
                      synthetic=12000, series_length=4096,
                      weights={"kernel_synth": 4.0, "regime_switch": 1.0, "spikes": 1.0, "delayed_actions": 1.0,
                               "scheduled_events": 1.0, "coupled": 1.0}),
}
# Wider models at the same step cost: a 0.93M-parameter step is bound by kernel launches, not arithmetic, so width
# (and a batch of 256) comes almost free per step on an H200; depth does not (launches grow with layers).
PRESETS["gpu-medium"] = {**PRESETS["gpu-small"],
                         "model": {**PRESETS["gpu-small"]["model"], "d_model": 256, "num_heads": 8},
                         "train": {**PRESETS["gpu-small"]["train"], "batch_size": 256, "lr": 8e-4}}
PRESETS["gpu-medium-deep"] = {**PRESETS["gpu-small"],
                              "model": {**PRESETS["gpu-small"]["model"], "d_model": 192, "num_heads": 6,
                                        "n_layers": 6},
                              "train": {**PRESETS["gpu-small"]["train"], "batch_size": 256}}
# The same with exactly repeating cycles in the mix (datasets.synthetic.repeating_pattern): the default smoothed
# sharp daily cycles that seasonal naive copies (M4 hourly MASE 2.26 against naive's 1.19, experiments/README.md)
PRESETS["gpu-medium-deep-copy"] = {**PRESETS["gpu-medium-deep"],
                                   "weights": {**PRESETS["gpu-small"]["weights"], "repeating_pattern": 2.0}}
# The same plus basic structural series (datasets.synthetic.structural: a wandering level, a drifting calendar
# season, noise of any strength): 8 more H200 minutes of the copy mix left zero-shot unchanged (0.896 / 0.706
# against 0.901 / 0.704, results/zero_shot_continued.md), so the mix, not the steps, is what to change
PRESETS["gpu-medium-deep-structural"] = {**PRESETS["gpu-medium-deep-copy"],
                                         "weights": {**PRESETS["gpu-medium-deep-copy"]["weights"], "structural": 3.0}}
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
    parser.add_argument("--install", action="store_true",
                        help="install the trained model as tsham/assets/default (matrices in fp16)")
    parser.add_argument("--install-from", metavar="RUN", help="install RUN/model (an earlier run) and exit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="override the preset's steps (smoke runs)")
    parser.add_argument("--minutes", type=float, help="override the preset's wall-clock budget")
    parser.add_argument("--synthetic", type=int, help="override the preset's number of synthetic series")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    parser.add_argument("--warmup-steps", type=int, help="override the preset's learning-rate warm-up")
    parser.add_argument("--weights", nargs="+", metavar="GENERATOR=W",
                        help="override the preset's synthetic mix, e.g. repeating_pattern=2 kernel_synth=4")
    parser.add_argument("--kv-rope-base", type=float, help="rotary positions on the scratchpad (HamConfig."
                        "kv_rope_base; 0 off): lets attention look back a fixed number of patches, e.g. one cycle")
    parser.add_argument("--prior", action="store_true", help="add the seasonal prior (tsham.heads.SeasonalPrior) "
                        f"with lags {DEFAULT_LAGS}: copies of the context one season back that the model mixes in; "
                        "with --init-from it starts fresh on the start model's weights")
    parser.add_argument("--prior-means", nargs="*", metavar="LAGxSEASONS", help="offer the prior averaged copies too "
                        "(PriorConfig.means), e.g. 24x7 = the mean of the last 7 days at hourly rate; the flag alone: "
                        f"{' '.join(f'{p}x{n}' for p, n in DEFAULT_MEANS)}. The list replaces the start model's means: "
                        "with --init-from, the candidates it keeps carry their learned scores and new ones start fresh")
    parser.add_argument("--prior-per-step", action="store_true", help="score the prior's candidates per step of a "
                        "future patch too (PriorConfig.per_step; new scores start at zero)")
    parser.add_argument("--prior-spread", action="store_true", help="widen the quantiles by the spread of the "
                        "averaged candidates' seasons (PriorConfig.spread; the new scale starts at zero)")
    parser.add_argument("--init-from", metavar="MODEL", help="continue pretraining this exported model (a folder, "
                        "or 'default' for the shipped one): its architecture, not the preset's, and its card's "
                        "steps are recorded beside the new ones")
    args = parser.parse_args()
    if args.install_from:
        install(Path(args.install_from) / "model")
        return
    preset = PRESETS[args.preset]
    for key, field in (("steps", "steps"), ("minutes", "max_minutes"), ("batch_size", "batch_size"), ("lr", "lr"),
                       ("warmup_steps", "warmup_steps")):
        if getattr(args, key) is not None:
            preset = {**preset, "train": {**preset["train"], field: getattr(args, key)}}
    if args.synthetic is not None:
        preset = {**preset, "synthetic": args.synthetic}
    if args.weights:
        pairs = [w.partition("=") for w in args.weights]
        if any(not sep for _, sep, _ in pairs):
            parser.error(f"--weights takes GENERATOR=WEIGHT pairs; got {args.weights}")
        preset = {**preset, "weights": {name: float(w) for name, _, w in pairs}}
    start_model, start_dir = None, None
    if args.init_from:
        start_dir = ASSETS if args.init_from == "default" else Path(args.init_from)
        start_model = load_checkpoint(start_dir)
        config = TshamConfig.from_dict(start_model.config.to_dict())  # a copy: the start's own stays as it was
    else:
        config = TshamConfig.small(**preset["model"])
        config.context_length = preset["context_length"]
        config.align = preset.get("align", "end")
    if args.prior and not config.prior.lags:  # a start model with a prior keeps its own
        config.prior = PriorConfig(lags=DEFAULT_LAGS)
    if args.prior_means is not None:
        if not config.prior.lags:
            parser.error("--prior-means needs a prior: add --prior, or start from a model with one")
        try:
            means = parse_means(args.prior_means) or DEFAULT_MEANS
            config.prior = dataclasses.replace(config.prior, means=means).within(config.context_length)
        except ValueError as err:
            parser.error(f"--prior-means: {err}")
        if dropped := sorted(set(means) - set(config.prior.means)):
            print(f"prior: a context of {config.context_length} steps cannot score the means {dropped}; left out")
    for flag in ("per_step", "spread"):
        if getattr(args, f"prior_{flag}"):
            if not config.prior.lags:
                parser.error(f"--prior-{flag.replace('_', '-')} needs a prior: add --prior, or start from a model "
                             "with one")
            config.prior = dataclasses.replace(config.prior, **{flag: True})
    if args.kv_rope_base is not None:
        config.ham = dataclasses.replace(config.ham, kv_rope_base=args.kv_rope_base)  # re-validated
    run = TrainConfig(seed=args.seed, **preset["train"])
    synthetic = [PoolSeries.from_synthetic(s) for s in synthetic_mix(
        preset["synthetic"], preset["series_length"], seed=args.seed, weights=preset.get("weights"))]
    real, real_names = wheel_pool()
    start = time.perf_counter()
    model = train(config, run, synthetic + real, args.out, init_from=start_model)
    seconds = time.perf_counter() - start
    history = np.loadtxt(Path(args.out) / "history.csv", delimiter=",", skiprows=1, ndmin=2)
    steps, tokens = int(history[-1, 0]), int(history[-1, 3])  # what ran (a time budget may stop it early)
    card = {**header(), "preset": args.preset, "parameters": sum(p.numel() for p in model.parameters()),
            "data": {"synthetic_series": len(synthetic), "synthetic_length": preset["series_length"],
                     "real_series": real_names, "evaluation_sets_used": []},
            "train": {k: v for k, v in vars(run).items() if k not in ("log_every",)},
            "prior_lags": list(config.prior.lags), "prior_means": [list(m) for m in config.prior.means],
            "steps": steps, "batch_size": run.batch_size,
            "patch_tokens_seen": tokens,
            "final_loss": float(history[-20:, 1].mean()), "train_seconds": round(seconds, 1),
            "kv_threshold_exported": [float(b.mixer.router.tau) for b in model.stack.blocks]}
    if start_dir is not None:
        start_card = start_dir / "card.json"
        card["init_from"] = {"model": str(args.init_from), "card": json.loads(start_card.read_text())
                             if start_card.is_file() else None}
    (Path(args.out) / "model" / "card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps(card, indent=1))
    if args.install:
        install(Path(args.out) / "model")


def install(model_dir: Path) -> None:
    """Makes ``model_dir`` the shipped default: its weights with fp16 matrices (half the wheel; forecasts move by
    well under 1%), its config, card and training config."""
    model = load_checkpoint(model_dir)
    if ASSETS.exists():
        shutil.rmtree(ASSETS)
    save_checkpoint(model, ASSETS, matrix_dtype=torch.float16)
    for extra in ("card.json", "train_config.json"):
        if (model_dir / extra).is_file():
            shutil.copy(model_dir / extra, ASSETS / extra)
    print(f"installed {model_dir} into {ASSETS} ({(ASSETS / 'model.safetensors').stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
