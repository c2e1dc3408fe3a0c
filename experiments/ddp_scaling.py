"""Data-parallel pretraining: throughput per GPU at 1 and N processes, and loss curves side by side.

    # one run per setting (Lightning's DDP launches the other ranks itself; torchrun works too)
    python -m tsham.experiments.ddp_scaling run --devices 1 --batch-size 256 --out runs/ddp1
    python -m tsham.experiments.ddp_scaling run --devices 2 --batch-size 128 --out runs/ddp2
    python -m tsham.experiments.ddp_scaling run --devices 2 --batch-size 128 --strategy fsdp --out runs/fsdp2
    python -m tsham.experiments.ddp_scaling summary runs/ddp1 runs/ddp2 [--name ddp_scaling_h100]

The model and data are the ``gpu-small`` pretraining preset's (experiments/pretrain.py). ``--batch-size`` is per
rank: equal global batches (256 on 1 GPU, 128 x 2) make the loss curves comparable step for step; 1-process
seeds give the seed-noise band. A DDP step mixes one batch per rank (each of one horizon and channel layout);
``--accumulate 2 --batch-size 128`` on one GPU composes its steps the same way. Each run also scores its exported
model on fixed held-out windows (``heldout_loss``), the number the seed band is judged on. Without CUDA the same
code path runs on CPU processes (gloo).
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
from tsham.training import PoolSeries, TrainConfig, WindowStream, train
from tsham.training.validation import validation_loss


def run(args) -> None:
    preset = PRESETS["gpu-small"]
    config = TshamConfig.small(**preset["model"])
    config.context_length, config.align = args.context_length or preset["context_length"], preset["align"]
    train_kwargs = {**preset["train"], "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                    "max_minutes": None, "warmup_steps": min(100, args.steps // 4), "log_every": 1,
                    "accumulate": args.accumulate}
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(args.synthetic, preset["series_length"], seed=0,
                                                                 weights=preset["weights"])]
    strategy = args.strategy if args.devices > 1 or args.strategy == "fsdp" else "auto"
    model = train(config, TrainConfig(**train_kwargs), pool, args.out, progress=False, devices=args.devices,
                  strategy=strategy)
    if model is not None:  # rank 0
        meta = {**header(), "devices": args.devices, "strategy": strategy, "batch_per_rank": args.batch_size,
                "accumulate": args.accumulate, "seed": args.seed,
                "heldout_loss": heldout_loss(model, preset, config.context_length),
                "accelerator": "gpu" if torch.cuda.is_available() else "cpu (gloo)"}
        (Path(args.out) / "run.json").write_text(json.dumps(meta, indent=1))


def heldout_loss(model, preset: dict, context_length: int, batches: int = 8, batch_size: int = 64) -> float:
    """Mean pinball loss of a trained model on fixed held-out windows: series and windows drawn from seeds no
    run trains on, horizon 64, the model's exported KV budget. Every run scores the same windows, so the spread
    over training seeds is the seed band the multi-GPU runs are judged against."""
    series = synthetic_mix(64, preset["series_length"], seed=987_654, weights=preset["weights"])
    stream = iter(WindowStream([PoolSeries.from_synthetic(s) for s in series], context_length, 64, batch_size,
                               seed=987_654))
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    return validation_loss(model, [next(stream) for _ in range(batches)])


def summary(args) -> None:
    rows, curves = [], {}
    for folder in map(Path, args.runs):
        meta = json.loads((folder / "run.json").read_text())
        h = np.loadtxt(folder / "history.csv", delimiter=",", skiprows=1, ndmin=2)  # step, loss, kv, tokens, s
        steady = h[h[:, 0] >= args.skip]  # after compilation / warm-up steps
        rank_tokens_per_s = (steady[-1, 3] - steady[0, 3]) / (steady[-1, 4] - steady[0, 4])
        setting = f"{meta.get('strategy', 'ddp')} {meta['devices']} x {meta['batch_per_rank']}"
        if meta.get("accumulate", 1) > 1:
            setting += f" x {meta['accumulate']} accumulated"
        rows.append({"run": f"{setting} seed {meta['seed']}", "setting": setting, "devices": meta["devices"],
                     "batch_per_rank": meta["batch_per_rank"], "seed": meta["seed"],
                     "tokens_per_s_per_device": rank_tokens_per_s,
                     "tokens_per_s_total": rank_tokens_per_s * meta["devices"],
                     "final_loss_mean_last_50_steps": float(h[h[:, 0] > h[-1, 0] - 50, 1].mean()),
                     "heldout_loss": meta.get("heldout_loss", float("nan")),
                     "machine": meta["machine"], "accelerator": meta["accelerator"]})
        curves.setdefault(setting, []).append(h)
    reference = args.reference or rows[0]["setting"]
    if reference not in {r["setting"] for r in rows}:
        raise ValueError(f"--reference {reference!r} names no run; settings: {sorted({r['setting'] for r in rows})}")
    base = np.mean([r["tokens_per_s_total"] for r in rows if r["setting"] == reference])
    for r in rows:
        r["speedup_total_vs_1"] = r["tokens_per_s_total"] / base
    lines = ["| run (devices x batch per rank) | patch tokens/s per device | total | total vs reference | "
             "train loss, mean of last 50 steps | held-out loss |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['tokens_per_s_per_device']:,.0f} | {r['tokens_per_s_total']:,.0f} | "
                     f"{r['speedup_total_vs_1']:.2f}x | {r['final_loss_mean_last_50_steps']:.4f} | "
                     f"{r['heldout_loss']:.4f} |")
    lines += ["", seed_band_table(rows, reference)]
    table = "\n".join(lines)
    print(table)
    plot_curves(curves, RESULTS / f"{args.name}.png", bin_steps=args.bin)
    meta = {**header(), "runs": args.note or ", ".join(args.runs),
            "throughput": f"steps >= {args.skip}, rank 0's tokens / s",
            "plot": f"{args.name}.png"}
    write_results(args.name, meta, rows, table)


def seed_band_table(rows: list[dict], reference: str) -> str:
    """Held-out loss per setting over its seeds (mean +- std, min..max), and whether each other setting's mean lies
    inside the reference setting's seed band (its seeds' mean +- 2 std)."""
    settings = {}
    for r in rows:
        settings.setdefault(r["setting"], []).append(r["heldout_loss"])
    ref = np.asarray(settings[reference])
    centre, spread = ref.mean(), ref.std(ddof=1) if len(ref) > 1 else float("nan")
    lines = [f"| setting | seeds | held-out loss mean +- std | min .. max | inside the band of {reference} "
             f"({centre:.4f} +- 2 x {spread:.4f}) |", "|---|---|---|---|---|"]
    for setting, values in settings.items():
        v = np.asarray(values)
        std = v.std(ddof=1) if len(v) > 1 else float("nan")
        inside = "(reference)" if setting == reference else "no band: one reference seed" \
            if not np.isfinite(spread) else "yes" if abs(v.mean() - centre) <= 2 * spread else "no"
        lines.append(f"| {setting} | {len(v)} | {v.mean():.4f} +- {std:.4f} | {v.min():.4f} .. {v.max():.4f} | "
                     f"{inside} |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, list[np.ndarray]], path: Path, bin_steps: int) -> None:
    """Training loss against step, averaged in bins of ``bin_steps`` (each logged batch has its own horizon and KV
    budget, so single steps are noisy): one line per setting (mean over seeds), shaded between its seeds' min/max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for setting, runs in curves.items():
        last = int(min(h[-1, 0] for h in runs))
        edges = np.arange(0, last + bin_steps, bin_steps)
        bins = list(zip(edges[:-1], edges[1:], strict=True))
        binned = np.array([[h[(h[:, 0] >= a) & (h[:, 0] < b), 1].mean() for a, b in bins] for h in runs])
        mid = (edges[:-1] + edges[1:]) / 2
        ax.plot(mid, binned.mean(0), label=f"{setting} ({len(runs)} seeds)", lw=1.5)
        if len(runs) > 1:
            ax.fill_between(mid, binned.min(0), binned.max(0), alpha=0.2)
    ax.set(xlabel="optimizer step", ylabel=f"pinball loss (scaled), mean per {bin_steps} steps",
           title="Loss curves: one device against data-parallel")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


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
    r.add_argument("--accumulate", type=int, default=1,
                   help="micro-batches per step: 1 GPU x 128 x 2 composes a step as DDP's 2 x 128 does")
    r.add_argument("--synthetic", type=int, default=2000)
    r.add_argument("--context-length", type=int, help="override the preset's (smaller for CPU runs)")
    r.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("runs", nargs="+")
    s.add_argument("--skip", type=int, default=30, help="steps left out of the throughput")
    s.add_argument("--name", default="ddp_scaling")
    s.add_argument("--note", help="where, when and at which revision the runs ran (the header's runs line)")
    s.add_argument("--reference", help="the setting whose seeds make the band, e.g. 'auto 1 x 256' (default: the "
                   "first run's)")
    s.add_argument("--bin", type=int, default=25, help="steps per point of the plotted loss curves")
    args = parser.parse_args()
    run(args) if args.what == "run" else summary(args)


if __name__ == "__main__":
    main()
