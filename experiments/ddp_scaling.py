"""Data-parallel pretraining: throughput per GPU at 1 and N processes, and loss curves side by side.

    # one run per setting (Lightning's DDP launches the other ranks itself; torchrun works too)
    python -m tsham.experiments.ddp_scaling run --devices 1 --batch-size 256 --out runs/ddp1
    python -m tsham.experiments.ddp_scaling run --devices 2 --batch-size 128 --out runs/ddp2
    python -m tsham.experiments.ddp_scaling run --devices 2 --batch-size 128 --strategy fsdp --out runs/fsdp2
    python -m tsham.experiments.ddp_scaling summary runs/ddp1 runs/ddp2 [--name ddp_scaling_h100]

The model and data are the ``gpu-small`` pretraining preset's (experiments/pretrain.py). ``--batch-size`` is per
rank: equal global batches (256 on 1 GPU, 128 x 2) make the loss curves comparable step for step; a second
1-process seed gives the seed-noise band. Without CUDA the same code path runs on CPU processes (gloo).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tsham.datasets import synthetic_mix
from tsham.experiments.common import RESULTS, header, write_results
from tsham.experiments.pretrain import PRESETS

from tsham.config import TshamConfig
from tsham.training import PoolSeries, TrainConfig, train


def run(args) -> None:
    preset = PRESETS["gpu-small"]
    config = TshamConfig.small(**preset["model"])
    config.context_length, config.align = args.context_length or preset["context_length"], preset["align"]
    train_kwargs = {**preset["train"], "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                    "max_minutes": None, "warmup_steps": min(100, args.steps // 4), "log_every": 10}
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(args.synthetic, preset["series_length"], seed=0,
                                                                 weights=preset["weights"])]
    strategy = args.strategy if args.devices > 1 or args.strategy == "fsdp" else "auto"
    train(config, TrainConfig(**train_kwargs), pool, args.out, progress=False, devices=args.devices,
          strategy=strategy)
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        meta = {**header(), "devices": args.devices, "strategy": strategy, "batch_per_rank": args.batch_size,
                "seed": args.seed,
                "accelerator": "gpu" if torch.cuda.is_available() else "cpu (gloo)"}
        (Path(args.out) / "run.json").write_text(json.dumps(meta, indent=1))


def summary(args) -> None:
    rows, curves = [], {}
    for folder in map(Path, args.runs):
        meta = json.loads((folder / "run.json").read_text())
        h = np.loadtxt(folder / "history.csv", delimiter=",", skiprows=1, ndmin=2)  # step, loss, kv, tokens, s
        steady = h[h[:, 0] >= args.skip]  # after compilation / warm-up steps
        rank_tokens_per_s = (steady[-1, 3] - steady[0, 3]) / (steady[-1, 4] - steady[0, 4])
        label = f"{meta.get('strategy', 'ddp')} {meta['devices']} x {meta['batch_per_rank']} seed {meta['seed']}"
        rows.append({"run": label, "devices": meta["devices"], "batch_per_rank": meta["batch_per_rank"],
                     "tokens_per_s_per_device": rank_tokens_per_s,
                     "tokens_per_s_total": rank_tokens_per_s * meta["devices"],
                     "final_loss_mean_last_50_steps": float(h[h[:, 0] > h[-1, 0] - 50, 1].mean()),
                     "machine": meta["machine"], "accelerator": meta["accelerator"]})
        curves[label] = h
    base = next(r for r in rows if r["devices"] == 1)["tokens_per_s_total"]
    for r in rows:
        r["speedup_total_vs_1"] = r["tokens_per_s_total"] / base
    lines = ["| run (devices x batch per rank) | patch tokens/s per device | total | total vs 1 device | "
             "loss, mean of last 50 steps |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['tokens_per_s_per_device']:,.0f} | {r['tokens_per_s_total']:,.0f} | "
                     f"{r['speedup_total_vs_1']:.2f}x | {r['final_loss_mean_last_50_steps']:.4f} |")
    table = "\n".join(lines)
    print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, h in curves.items():
        ax.plot(h[:, 0], h[:, 1], label=label, lw=1)
    ax.set(xlabel="optimizer step", ylabel="pinball loss (scaled)", title="DDP loss curves (equal global batch)")
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{args.name}.png", dpi=110)
    meta = {**header(), "runs": ", ".join(args.runs), "throughput": f"steps >= {args.skip}, rank 0's tokens / s",
            "plot": f"{args.name}.png"}
    write_results(args.name, meta, rows, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--devices", type=int, default=1)
    r.add_argument("--batch-size", type=int, default=128, help="per rank")
    r.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp",
                   help="fsdp shards each HAM block (GPUs only; also runs on 1 GPU)")
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--synthetic", type=int, default=2000)
    r.add_argument("--context-length", type=int, help="override the preset's (smaller for CPU runs)")
    r.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("runs", nargs="+")
    s.add_argument("--skip", type=int, default=30, help="steps left out of the throughput")
    s.add_argument("--name", default="ddp_scaling")
    args = parser.parse_args()
    run(args) if args.what == "run" else summary(args)


if __name__ == "__main__":
    main()
