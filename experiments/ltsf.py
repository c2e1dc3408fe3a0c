"""LTSF protocol on ETTh1 / ETTh2: `tsham finetune` on the train split, MSE / MAE at horizons 96/192/336/720.

    python -m tsham.experiments.ltsf [--model PATH] [--steps 1500] [--minutes 2.5] [--datasets etth1 etth2]
    python -m tsham.experiments.ltsf --zero-shot      # the pretrained model alone, no fine-tune (CPU: ~30 minutes)

REFERENCE.md's borders with look-back L = 512 (as PatchTST/64; `--lookback` sets another): train rows [0, 8640),
validation [8640, 11520) (forecast targets; their look-back reaches into the train rows), test [11520 - L, 14400);
every channel z-scored with its train-split mean and std; every test window (stride 1) of every channel is
forecast channel-independently (a univariate forecast per channel, as PatchTST does); MSE / MAE of the median
on the z-scored values. The train split is written as a long CSV and fine-tuned through the CLI
(``tsham finetune``), one model per dataset serving all four horizons (``--horizons 336``: one model for that
horizon, as PatchTST/64 trains); with ``--validation`` (the default) the validation rows are held out, scored every
``--val-every`` steps at the longest horizon, and the best weights (the pretrained ones included) are the ones
tested. The PatchTST/64 numbers come from a loader that drops the last incomplete batch of test windows (up to 127
of ~2800); every window is scored here. The zero-shot model is scored too, and beside it a baseline that needs no
training: the mean daily profile of the last 21 days (:class:`SeasonalProfile`; look-backs of 504 steps or more).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tsham.datasets import load_ett
from tsham.experiments.common import header, write_results

from tsham.checkpoint import load_checkpoint
from tsham.cli import main as cli
from tsham.forecasting.pipeline import DEFAULT_MODEL

LOOKBACK, TRAIN_END, TEST_END = 512, 8640, 14400
TEST_START = 11520
HORIZONS = (96, 192, 336, 720)
PATCHTST_64 = {"etth1": [(0.370, 0.400), (0.413, 0.429), (0.422, 0.440), (0.447, 0.468)],
               "etth2": [(0.274, 0.337), (0.341, 0.382), (0.329, 0.384), (0.379, 0.422)]}


def normalised(name: str) -> np.ndarray:
    """ETT ``[14400, 7]`` z-scored with the train split's statistics."""
    values = load_ett(name).to_numpy(np.float32)[:TEST_END]
    train = values[:TRAIN_END]
    return (values - train.mean(0)) / train.std(0)


@torch.no_grad()
def score(model, series: np.ndarray, horizon: int, device: str, batch: int | None = None, stride: int = 1,
          lookback: int = LOOKBACK) -> tuple[float, float]:
    """MSE / MAE of the median over every test window of every channel of ``series`` ``[T, C]`` (the same
    target windows, rows [TEST_START, TEST_END), at any ``lookback``). ``batch`` windows per forward (default 1024
    on a GPU, 64 on the CPU, where 1024 windows of 2048 steps ran 94 ms per window against 16.5 at 64)."""
    if not 1 <= lookback <= TEST_START:  # a negative start would index from the end: the test rows themselves
        raise ValueError(f"score: lookback must be in [1, {TEST_START}] (the rows before the test targets); got "
                         f"{lookback}")
    batch = batch or (1024 if str(device).startswith("cuda") else 64)
    model = model.to(device).eval()
    x = torch.from_numpy(series).to(device)
    starts = torch.arange(TEST_START - lookback, TEST_END - lookback - horizon + 1, stride, device=device)
    se = ae = n = 0.0
    for c in range(series.shape[1]):
        for chunk in starts.split(batch):
            idx = chunk[:, None] + torch.arange(lookback + horizon, device=device)
            windows = x[idx, c]  # (N, L + H)
            median = model(windows[:, :lookback], horizon).median[:, 0]
            err = median - windows[:, lookback:]
            se, ae, n = se + float(err.pow(2).sum()), ae + float(err.abs().sum()), n + err.numel()
    return se / n, ae / n


class SeasonalProfile(torch.nn.Module):
    """A baseline beside the model: the mean of the context's last ``seasons`` cycles of ``period`` steps,
    repeated over the horizon. ``forward(context [N, L], horizon)`` -> ``.median [N, 1, horizon]`` (as the model's
    forecast, so :func:`score` reads both). The mean daily profile of 21 days scores ETTh1 close to PatchTST/64."""

    def __init__(self, period: int = 24, seasons: int = 21):
        super().__init__()
        self.period, self.seasons = period, seasons

    def forward(self, context: torch.Tensor, horizon: int):
        span = self.period * self.seasons
        if context.shape[1] < span:
            raise ValueError(f"SeasonalProfile: needs {span} context steps ({self.seasons} x {self.period}); got "
                             f"{context.shape[1]}")
        profile = context[:, -span:].reshape(len(context), self.seasons, self.period).mean(1)  # (N, period)
        reps = -(-horizon // self.period)
        return type("Forecast", (), {"median": profile.repeat(1, reps)[:, None, :horizon]})()


PROFILE = SeasonalProfile()
PROFILE_HEADER = f"mean daily profile of {PROFILE.seasons} days MSE / MAE (baseline)"


def profile_scores(series: np.ndarray, horizon: int, device: str, stride: int, lookback: int) -> dict:
    """MSE / MAE of :data:`PROFILE` on the same test windows (none when the look-back is shorter than it reads)."""
    if lookback < PROFILE.period * PROFILE.seasons:
        return {}
    mse, mae = score(PROFILE, series, horizon, device, stride=stride, lookback=lookback)
    return {"profile_MSE": mse, "profile_MAE": mae}


def validation_summary(run: Path) -> dict:
    """The fine-tune's validation decision (``model/validation.json``), or nothing without validation."""
    path = run / "model" / "validation.json"
    if not path.is_file():
        return {}
    v = json.loads(path.read_text())
    return {"val_loss_pretrained": v["initial_val_loss"], "val_loss_best": v["best_val_loss"],
            "best_step": v["best_step"]}


def zero_shot(args) -> None:
    """The protocol's test windows forecast by the pretrained model as it is, beside PatchTST/64's published MSE."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, rows = load_checkpoint(args.model), []
    for name in args.datasets:
        series = normalised(name)
        for h, (ref_mse, ref_mae) in zip(HORIZONS, PATCHTST_64[name], strict=True):
            if h not in args.horizons:
                continue
            mse, mae = score(model, series, h, device, stride=args.stride, lookback=args.lookback)
            rows.append({"dataset": name, "horizon": h, "zero_shot_MSE": mse, "zero_shot_MAE": mae,
                         "PatchTST64_MSE": ref_mse, "PatchTST64_MAE": ref_mae,
                         **profile_scores(series, h, device, args.stride, args.lookback)})
            print(rows[-1], flush=True)
    table = "\n".join(["| dataset | horizon | tsham zero-shot MSE / MAE | PatchTST/64 MSE / MAE (published) | "
                       f"{PROFILE_HEADER} |", "|---|---|---|---|---|",
                       *(f"| {r['dataset']} | {r['horizon']} | {r['zero_shot_MSE']:.3f} / {r['zero_shot_MAE']:.3f} | "
                         f"{r['PatchTST64_MSE']:.3f} / {r['PatchTST64_MAE']:.3f} | {profile_cell(r)} |" for r in rows)])
    print(table)
    meta = {**header(), "model": args.model,
            "protocol": f"L={args.lookback}, test [{TEST_START}-L, {TEST_END}) every {args.stride} step(s), "
                        "channel-independent, median forecast, z-scored with train stats; no fine-tune"}
    write_results(results_name(args, "_zero_shot"), meta, rows, table)


FINETUNE_ONLY = ("steps", "minutes", "batch_size", "lr", "out", "validation", "val_every", "patience", "freeze")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="pretrained checkpoint (default: shipped)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(PATCHTST_64), default=["etth1", "etth2"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--minutes", type=float, help="wall-clock budget per fine-tune")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", default=None, help="run folders (default: a temporary directory)")
    parser.add_argument("--validation", action=argparse.BooleanOptionalAction, default=True,
                        help="hold out the validation rows and test the best-validating weights")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--patience", type=int, default=5, help="validations without improvement before stopping")
    parser.add_argument("--stride", type=int, default=1, help="test windows every N steps (1 = the protocol)")
    parser.add_argument("--lookback", type=int, default=LOOKBACK, help="look-back L in steps (PatchTST/64's 512 by "
                        "default; up to the model's context length): the test targets stay the same")
    parser.add_argument("--horizons", type=int, nargs="+", choices=HORIZONS, default=list(HORIZONS),
                        help="fine-tune one model on these horizons and score them (one horizon: PatchTST/64's one "
                        "model per horizon)")
    parser.add_argument("--freeze", choices=["none", "encoder", "stack"], default="none",
                        help="tsham finetune --freeze: keep the encoder (and the HAM stack) fixed")
    parser.add_argument("--tag", help="a suffix for the results' name, for variants the name does not tell apart "
                        "(another --lr, --steps or --model)")
    parser.add_argument("--zero-shot", action="store_true", help="score the pretrained model only (no fine-tune; "
                        "results in experiments/results/ltsf_<datasets>_zero_shot*)")
    return parser


def check_args(parser: argparse.ArgumentParser, args) -> None:
    """Bad options end the run before any fine-tune starts (a fine-tune takes minutes)."""
    longest = TRAIN_END - max(HORIZONS)  # a fine-tune needs whole training windows of look-back + 720 steps
    context = load_checkpoint(args.model).config.context_length
    if not 1 <= args.lookback <= min(longest, context):
        parser.error(f"--lookback must be in [1, {min(longest, context)}]: the model reads at most {context} steps "
                     f"and the train rows hold windows of at most {longest} + {max(HORIZONS)}; got {args.lookback}")
    for key in ("stride", "steps", "val_every", "batch_size"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be > 0; got {args.minutes}")
    if args.zero_shot:
        given = ["--" + k.replace("_", "-") for k in FINETUNE_ONLY if getattr(args, k) != parser.get_default(k)]
        if given:
            parser.error(f"--zero-shot scores the pretrained model as it is; {', '.join(given)} only apply to a "
                         "fine-tune")


def finetune(name: str, series: np.ndarray, args, out: Path) -> tuple[Path, list[str]]:
    """``tsham finetune`` of ``args.model`` on ``name``'s train rows (and validation rows, held out, with
    ``args.validation``) into ``out / name``; returns the run folder and the command line. A failed fine-tune
    stops the run (scoring a model an earlier run left in the folder would report numbers nobody trained)."""
    csv = out / f"{name}_train.csv"
    rows_given = TEST_START if args.validation else TRAIN_END  # the tail past TRAIN_END is held out by finetune
    frame = pd.DataFrame(series[:rows_given], columns=load_ett(name).columns)
    frame["timestamp"] = pd.date_range("2016-07-01", periods=rows_given, freq="h")
    frame.melt(id_vars="timestamp", var_name="id", value_name="target").to_csv(csv, index=False)
    argv = ["finetune", "--model", args.model, "--input", str(csv), "--out", str(out / name), "--synthetic", "0",
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--horizons", *map(str, args.horizons), "--context-length", str(args.lookback), "--warmup", "100",
            "--freeze", args.freeze, "--overwrite"]  # a rerun replaces the run its folder holds
    if args.minutes is not None:
        argv += ["--max-minutes", str(args.minutes)]
    if args.validation:
        argv += ["--validation-steps", str(TEST_START - TRAIN_END), "--val-every", str(args.val_every),
                 "--patience", str(args.patience)]
    if (rc := cli(argv)) != 0:
        raise SystemExit(f"ltsf: tsham finetune failed on {name} (exit {rc}); nothing scored")
    return out / name, argv


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    check_args(parser, args)
    if args.zero_shot:
        return zero_shot(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out or tempfile.mkdtemp(prefix="tsham-ltsf-"))
    out.mkdir(parents=True, exist_ok=True)
    rows, base, commands = [], load_checkpoint(args.model), []
    for name in args.datasets:
        series = normalised(name)
        start = time.perf_counter()
        run, argv = finetune(name, series, args, out)
        seconds, commands = time.perf_counter() - start, [*commands, "tsham " + " ".join(argv)]
        tuned = load_checkpoint(run / "model")
        steps = int(np.loadtxt(run / "history.csv", delimiter=",", skiprows=1, ndmin=2)[-1, 0])
        for h, (ref_mse, ref_mae) in zip(HORIZONS, PATCHTST_64[name], strict=True):
            if h not in args.horizons:
                continue
            mse, mae = score(tuned, series, h, device, stride=args.stride, lookback=args.lookback)
            zs_mse, zs_mae = score(base, series, h, device, stride=args.stride, lookback=args.lookback)
            rows.append({"dataset": name, "horizon": h, "MSE": mse, "MAE": mae, "zero_shot_MSE": zs_mse,
                         "zero_shot_MAE": zs_mae, "PatchTST64_MSE": ref_mse, "PatchTST64_MAE": ref_mae,
                         "beats_PatchTST64": mse < ref_mse, "finetune_steps": steps,
                         "finetune_seconds": round(seconds, 1), **validation_summary(run),
                         **profile_scores(series, h, device, args.stride, args.lookback)})
            print(rows[-1], flush=True)
    lines = ["| dataset | horizon | tsham fine-tuned MSE / MAE | exported step / steps run | tsham zero-shot MSE / MAE "
             f"| PatchTST/64 MSE / MAE (published) | lower MSE than PatchTST/64 | {PROFILE_HEADER} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['horizon']} | {r['MSE']:.3f} / {r['MAE']:.3f} | "
                     f"{r.get('best_step', r['finetune_steps'])} / {r['finetune_steps']} | {r['zero_shot_MSE']:.3f}"
                     f" / {r['zero_shot_MAE']:.3f} | {r['PatchTST64_MSE']:.3f} / {r['PatchTST64_MAE']:.3f} | "
                     f"{'yes' if r['beats_PatchTST64'] else 'no'} | {profile_cell(r)} |")
    meta = {**header(), "model": args.model,
            "protocol": f"L={args.lookback}, train [0, {TRAIN_END}), "
                        + (f"validation targets [{TRAIN_END}, {TEST_START}), " if args.validation
                           else "no validation, ")
                        + f"test [{TEST_START}-L, {TEST_END}) every {args.stride} step(s), channel-independent, median "
                        "forecast, z-scored with train stats",
            "finetune": "; ".join(commands) + (f" (minutes cap {args.minutes})" if args.minutes is not None else "")}
    table = "\n".join(lines)
    print(table)
    write_results(results_name(args), meta, rows, table)


def profile_cell(row: dict) -> str:
    """The baseline's cell of a results row ('-' where the look-back was too short for it)."""
    return f"{row['profile_MSE']:.3f} / {row['profile_MAE']:.3f}" if "profile_MSE" in row else "-"


def results_name(args, kind: str = "") -> str:
    """The results file's name: ``ltsf_etth`` (or the datasets run), ``kind``, then the look-back, stride, freeze,
    horizons and validation where they are not the protocol's, then ``--tag``: variants go beside the protocol's
    results, not over them."""
    datasets = "etth" if sorted(args.datasets) == ["etth1", "etth2"] else "-".join(args.datasets)
    return (f"ltsf_{datasets}{kind}" + ("" if args.lookback == LOOKBACK else f"_L{args.lookback}")
            + ("" if args.stride == 1 else f"_stride{args.stride}")
            + ("" if args.freeze == "none" else f"_freeze-{args.freeze}")
            + ("" if sorted(args.horizons) == list(HORIZONS) else "_h" + "-".join(map(str, sorted(args.horizons))))
            + ("" if args.validation else "_noval") + (f"_{args.tag}" if args.tag else ""))


if __name__ == "__main__":
    main()
