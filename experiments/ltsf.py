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
``--val-every`` steps by the median's MSE (``--val-metric``) on ``--val-windows`` windows shared out among the
horizons, and the best weights (the pretrained ones included) are the ones tested (until the tenth session: the
pinball loss on 512 windows of the longest horizon, which on ETTh2 never rated a step of the shipped model's
fine-tune above its start). The PatchTST/64 numbers come from a test loader that drops the last incomplete batch
of 128 windows (up to 127 of ~2800, the last in time): every number here is given on every window and, in
brackets, on the windows PatchTST/64 scored (:func:`patchtst_windows`), which is what its published numbers
compare with. The zero-shot model is scored too, and beside it a baseline that needs no training: the mean
daily profile of the last 21 days (:class:`SeasonalProfile`; look-backs of 504 steps or more).
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


PATCHTST_TEST_BATCH = 128  # PatchTST/64's ETTh scripts: --batch_size 128, and its test loader drops the last batch


def patchtst_windows(n: int) -> int:
    """How many of the protocol's ``n`` test windows PatchTST/64's published numbers average: its test loader reads
    the windows in order in batches of 128 with ``drop_last=True``, so the last ``n % 128`` (the end of the test
    months) are never scored. ETTh2's dropped windows are the hardest of the test set (the mean daily profile errs
    0.95 there at 336 against 0.32 on the rest), so a number on every window and a published one differ in kind."""
    return n - n % PATCHTST_TEST_BATCH


@torch.no_grad()
def window_errors(model, series: np.ndarray, horizon: int, device: str, batch: int | None = None, stride: int = 1,
                  lookback: int = LOOKBACK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The median's errors on every ``stride``-th test window of ``series`` ``[T, C]`` (the same target windows,
    rows [TEST_START, TEST_END), at any ``lookback``), each channel forecast on its own.

    Returns:
        ``(index [N], squared [N], absolute [N])``: each window's place among the protocol's every-step windows and
        its squared and absolute error summed over channels and steps. ``batch`` windows per forward (default 1024
        on a GPU, 64 on the CPU, where 1024 windows of 2048 steps ran 94 ms per window against 16.5 at 64).
    """
    if not 1 <= lookback <= TEST_START:  # a negative start would index from the end: the test rows themselves
        raise ValueError(f"ltsf: lookback must be in [1, {TEST_START}] (the rows before the test targets); got "
                         f"{lookback}")
    batch = batch or (1024 if str(device).startswith("cuda") else 64)
    model = model.to(device).eval()
    x = torch.from_numpy(series).to(device)
    index = torch.arange(0, TEST_END - TEST_START - horizon + 1, stride, device=device)
    se = torch.zeros(len(index), dtype=torch.float64, device=device)
    ae = torch.zeros_like(se)
    for c in range(series.shape[1]):
        for rows in torch.arange(len(index), device=device).split(batch):
            idx = (TEST_START - lookback + index[rows])[:, None] + torch.arange(lookback + horizon, device=device)
            windows = x[idx, c]  # (N, L + H)
            err = (model(windows[:, :lookback], horizon).median[:, 0] - windows[:, lookback:]).double()
            se[rows] += err.pow(2).sum(1)
            ae[rows] += err.abs().sum(1)
    return index.cpu().numpy(), se.cpu().numpy(), ae.cpu().numpy()


def summarise(errors: tuple[np.ndarray, np.ndarray, np.ndarray], horizon: int, channels: int,
              prefix: str = "") -> dict:
    """MSE / MAE from :func:`window_errors`: over every window scored (``{prefix}MSE``, ``{prefix}MAE``) and over
    those of them PatchTST/64's published numbers average (``{prefix}MSE_patchtst_windows``, ...;
    :func:`patchtst_windows`)."""
    index, se, ae = errors
    kept = index < patchtst_windows(TEST_END - TEST_START - horizon + 1)
    out = {}
    for suffix, rows in (("", slice(None)), ("_patchtst_windows", kept)):
        values = len(se[rows]) * channels * horizon
        out[f"{prefix}MSE{suffix}"] = float(se[rows].sum() / values)
        out[f"{prefix}MAE{suffix}"] = float(ae[rows].sum() / values)
    return out


def score(model, series: np.ndarray, horizon: int, device: str, batch: int | None = None, stride: int = 1,
          lookback: int = LOOKBACK) -> tuple[float, float]:
    """MSE / MAE of the median over every ``stride``-th test window of every channel (:func:`window_errors`)."""
    r = summarise(window_errors(model, series, horizon, device, batch, stride, lookback), horizon, series.shape[1])
    return r["MSE"], r["MAE"]


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
PROFILE_HEADER = f"mean daily profile of {PROFILE.seasons} days (baseline), MSE / MAE, every window (PatchTST/64's)"


def profile_scores(series: np.ndarray, horizon: int, device: str, stride: int, lookback: int) -> dict:
    """:data:`PROFILE` on the same test windows (``profile_MSE``, ... as :func:`summarise`; none when the look-back
    is shorter than it reads)."""
    if lookback < PROFILE.period * PROFILE.seasons:
        return {}
    return model_scores(PROFILE, series, horizon, device, stride, lookback, prefix="profile_")


def model_scores(model, series: np.ndarray, horizon: int, device: str, stride: int, lookback: int,
                 prefix: str = "") -> dict:
    """``model`` on the test windows: :func:`summarise` of :func:`window_errors`."""
    errors = window_errors(model, series, horizon, device, stride=stride, lookback=lookback)
    return summarise(errors, horizon, series.shape[1], prefix=prefix)


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
            rows.append({"dataset": name, "horizon": h,
                         **model_scores(model, series, h, device, args.stride, args.lookback, prefix="zero_shot_"),
                         "PatchTST64_MSE": ref_mse, "PatchTST64_MAE": ref_mae,
                         **profile_scores(series, h, device, args.stride, args.lookback)})
            print(rows[-1], flush=True)
    table = "\n".join([f"| dataset | horizon | tsham zero-shot {CELL} | {PUBLISHED} | {PROFILE_HEADER} |",
                       "|---|---|---|---|---|",
                       *(f"| {r['dataset']} | {r['horizon']} | {cell(r, 'zero_shot_')} | {published(r)} | "
                         f"{cell(r, 'profile_')} |" for r in rows)])
    print(table)
    meta = {**header(), "model": args.model,
            "protocol": f"L={args.lookback}, test [{TEST_START}-L, {TEST_END}) every {args.stride} step(s), "
                        "channel-independent, median forecast, z-scored with train stats; no fine-tune"}
    write_results(results_name(args, "_zero_shot"), meta, rows, table)


FINETUNE_ONLY = ("steps", "minutes", "batch_size", "lr", "out", "validation", "val_every", "val_windows", "val_metric",
                 "patience", "freeze", "seed")


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
    parser.add_argument("--val-windows", type=int, default=2048,
                        help="validation windows, shared out among the horizons (runs before 2026-12-02's tenth "
                        "session: 512, all at the longest horizon)")
    parser.add_argument("--val-metric", choices=["mse", "pinball"], default="mse",
                        help="what picks the exported step: the median's MSE, the protocol's metric (runs before "
                        "the tenth session: the pinball loss)")
    parser.add_argument("--seed", type=int, default=0, help="the fine-tune's seed (its windows, its validation "
                        "windows): a band over seeds says how far one fine-tune's numbers can be read")
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
    for key in ("stride", "steps", "val_every", "val_windows", "batch_size"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0; got {args.seed}")
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
            "--freeze", args.freeze, "--seed", str(args.seed), "--overwrite",  # a rerun replaces its folder's run
            "--no-align-jitter"]  # the protocol's windows are whole patches, as in every run committed so far
    if args.minutes is not None:
        argv += ["--max-minutes", str(args.minutes)]
    if args.validation:
        argv += ["--validation-steps", str(TEST_START - TRAIN_END), "--val-every", str(args.val_every),
                 "--val-windows", str(args.val_windows), "--val-metric", args.val_metric,
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
            tuned_scores = model_scores(tuned, series, h, device, args.stride, args.lookback)
            rows.append({"dataset": name, "horizon": h, **tuned_scores,
                         **model_scores(base, series, h, device, args.stride, args.lookback, prefix="zero_shot_"),
                         "PatchTST64_MSE": ref_mse, "PatchTST64_MAE": ref_mae,
                         "beats_PatchTST64": tuned_scores["MSE_patchtst_windows"] < ref_mse,
                         "finetune_steps": steps, "finetune_seconds": round(seconds, 1), **validation_summary(run),
                         **profile_scores(series, h, device, args.stride, args.lookback)})
            print(rows[-1], flush=True)
    lines = [f"| dataset | horizon | tsham fine-tuned {CELL} | exported step / steps run | tsham zero-shot {CELL} | "
             f"{PUBLISHED} | lower MSE than PatchTST/64 on its windows | {PROFILE_HEADER} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['horizon']} | {cell(r)} | {r.get('best_step', r['finetune_steps'])} / "
                     f"{r['finetune_steps']} | {cell(r, 'zero_shot_')} | {published(r)} | "
                     f"{'yes' if r['beats_PatchTST64'] else 'no'} | {cell(r, 'profile_')} |")
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


CELL = "MSE / MAE, every window (PatchTST/64's windows)"
PUBLISHED = "PatchTST/64 MSE / MAE (published; its windows)"


def cell(row: dict, prefix: str = "") -> str:
    """A results row's ``prefix`` scores as 'MSE / MAE (the same on PatchTST/64's windows)'; '-' where the row has
    none (the profile at look-backs too short for it)."""
    if f"{prefix}MSE" not in row:
        return "-"
    return (f"{row[f'{prefix}MSE']:.3f} / {row[f'{prefix}MAE']:.3f} ({row[f'{prefix}MSE_patchtst_windows']:.3f} / "
            f"{row[f'{prefix}MAE_patchtst_windows']:.3f})")


def published(row: dict) -> str:
    """A results row's published PatchTST/64 MSE / MAE cell."""
    return f"{row['PatchTST64_MSE']:.3f} / {row['PatchTST64_MAE']:.3f}"


def results_name(args, kind: str = "") -> str:
    """The results file's name: ``ltsf_etth`` (or the datasets run), ``kind``, then the look-back, stride, freeze,
    horizons and validation where they are not the protocol's, then ``--tag``: variants go beside the protocol's
    results, not over them."""
    datasets = "etth" if sorted(args.datasets) == ["etth1", "etth2"] else "-".join(args.datasets)
    return (f"ltsf_{datasets}{kind}" + ("" if args.lookback == LOOKBACK else f"_L{args.lookback}")
            + ("" if args.stride == 1 else f"_stride{args.stride}")
            + ("" if args.freeze == "none" else f"_freeze-{args.freeze}")
            + ("" if sorted(args.horizons) == list(HORIZONS) else "_h" + "-".join(map(str, sorted(args.horizons))))
            + ("" if args.validation else "_noval") + ("" if args.seed == 0 else f"_seed{args.seed}")
            + (f"_{args.tag}" if args.tag else ""))


if __name__ == "__main__":
    main()
