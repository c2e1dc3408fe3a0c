"""Where an LTSF forecast loses at long horizons: its MSE split into the horizon's mean level and the shape around it.

    python -m tsham.experiments.level_check [--model default] [--datasets etth2] [--horizons 336 720] [--stride 24]
    python -m tsham.experiments.level_check --mix 600      # which k-day mean predicts the level, pretraining mix vs ETT

On the LTSF protocol's test windows (``tsham.experiments.ltsf``: z-scored with train statistics, every ``--stride``-th
window, each channel on its own), every forecast's MSE splits exactly into ``level``, the squared error of its mean
over the horizon, and ``shape``, the squared error of what is left around that mean. Rows: the model's median; the
mean daily profile of 21 days; constant forecasts at the mean of the last k days; a constant level fitted by least
squares on those means over the train and validation windows (what the train months teach about the level); and
the model blended with the profile, ``w model + (1 - w) profile``, with ``w`` read on the test windows themselves
(an upper bound, not a method). A long-horizon forecast that errs in level where the profile does not has learned to
trust the recent days more than the series rewards. ``--mix N`` asks where that trust would come from: on N series of
the shipped model's pretraining mix (by generator) and on the ETT splits, the median squared level error of each
k-day mean, every window scaled by its context's mean and std as the model scales it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tsham.datasets import GENERATORS
from tsham.experiments.common import header, write_results
from tsham.experiments.ltsf import PROFILE, TEST_END, TEST_START, normalised
from tsham.experiments.pretrain import PRESETS

from tsham.checkpoint import load_checkpoint
from tsham.forecasting.pipeline import DEFAULT_MODEL

DAYS = (1, 3, 7, 14, 21, 42, 85)
BLENDS = (0.25, 0.5, 0.75)


def split(forecast: np.ndarray, truth: np.ndarray) -> dict:
    """``forecast``, ``truth`` ``[N, H, C]`` -> MSE, its ``level`` part (the horizon means' squared error) and its
    ``shape`` part (the rest); ``MSE == level + shape`` up to rounding."""
    f_mean, t_mean = forecast.mean(1, keepdims=True), truth.mean(1, keepdims=True)
    return {"MSE": float(((forecast - truth) ** 2).mean()), "level": float(((f_mean - t_mean) ** 2).mean()),
            "shape": float((((forecast - f_mean) - (truth - t_mean)) ** 2).mean())}


def windows(series: np.ndarray, first: int, last: int, lookback: int, horizon: int, stride: int):
    """Contexts ``[N, lookback, C]`` and targets ``[N, horizon, C]`` of the windows whose targets start in rows
    [first, last - horizon]: the protocol's test windows for ``(TEST_START, TEST_END)``."""
    views = np.lib.stride_tricks.sliding_window_view(series, lookback + horizon, axis=0)  # (T - W + 1, C, W)
    w = views[first - lookback:last - lookback - horizon + 1:stride].transpose(0, 2, 1)  # views, not copies
    return w[:, :lookback], w[:, lookback:]


@torch.no_grad()
def model_forecast(model, context: np.ndarray, horizon: int, batch: int = 64) -> np.ndarray:
    """The median of ``model`` on ``context [N, L, C]``, each channel alone -> ``[N, horizon, C]``."""
    out = np.empty((len(context), horizon, context.shape[2]), np.float32)
    for c in range(context.shape[2]):
        for i in range(0, len(context), batch):
            x = torch.from_numpy(np.ascontiguousarray(context[i:i + batch, :, c]))
            out[i:i + batch, :, c] = model(x, horizon).median[:, 0].numpy()
    return out


def day_means(context: np.ndarray) -> np.ndarray:
    """The means of the last k days (:data:`DAYS`) of ``context [N, L, C]`` -> ``[N, C, len(DAYS)]``."""
    return np.stack([context[:, -24 * d:].mean(1) for d in DAYS], -1)


SHIPPED_MIX = PRESETS["gpu-medium-deep-structural"]["weights"]  # the shipped model's preset (its card says so)


def scaled_level_errors(context: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``context [N, L, C]``, ``truth [N, H, C]`` -> ``[N * C, len(DAYS)]``: each k-day mean's squared error on the
    horizon's mean, in units of the context's std (the model's scaling)."""
    scale = context.std(1) + 1e-8  # (N, C)
    error = (day_means(context) - truth.mean(1)[..., None]) / scale[..., None]  # (N, C, K)
    return (error ** 2).reshape(-1, len(DAYS))


def mix_rows(count: int, seed: int, lookback: int, horizon: int, stride: int) -> list[dict]:
    """Median scaled level error of each k-day mean on ``count`` series (4096 steps, channel 0) of the shipped
    model's pretraining mix, in its proportions, per generator and in all, and on ETTh1 / ETTh2's train +
    validation and test windows (each channel)."""
    rng, total, groups = np.random.default_rng(seed), sum(SHIPPED_MIX.values()), {}
    for name, weight in SHIPPED_MIX.items():
        draws = [GENERATORS[name](4096, rng).values[:, :1].astype(np.float64)
                 for _ in range(max(1, round(count * weight / total)))]  # every generator, however few
        groups[f"mix: {name}"] = [scaled_level_errors(*windows(x, lookback, len(x), lookback, horizon, stride))
                                  for x in draws]
    groups["mix: all"] = [e for name in SHIPPED_MIX for e in groups[f"mix: {name}"]]
    for name in ("etth1", "etth2"):
        series = normalised(name).astype(np.float64)
        groups[f"{name} train + validation"] = [scaled_level_errors(*windows(series, lookback, TEST_START, lookback,
                                                                             horizon, stride))]
        groups[f"{name} test"] = [scaled_level_errors(*windows(series, TEST_START, TEST_END, lookback, horizon,
                                                               stride))]
    rows = []
    for label, parts in groups.items():
        median = np.median(np.concatenate(parts), 0)
        rows.append({"series": label, "windows": sum(len(e) for e in parts), "horizon": horizon,
                     **{f"{d} days": float(m) for d, m in zip(DAYS, median, strict=True)},
                     "best": DAYS[int(median.argmin())]})
        print(rows[-1], flush=True)
    return rows


def mix_main(args) -> None:
    """``--mix``: :func:`mix_rows` at each horizon, as a table."""
    rows = [r for h in args.horizons for r in mix_rows(args.mix, args.seed, args.lookback, h, args.stride)]
    table = "\n".join([f"| series | horizon | windows | {' | '.join(f'{d} days' for d in DAYS)} | best |",
                       "|---|---|---|" + "---|" * len(DAYS) + "---|",
                       *(f"| {r['series']} | {r['horizon']} | {r['windows']} | "
                         + " | ".join(f"{r[f'{d} days']:.3f}" for d in DAYS) + f" | {r['best']} days |"
                         for r in rows)])
    print(table)
    meta = {**header(), "protocol": f"L={args.lookback}, windows every {args.stride} step(s); median over windows "
            "(and channels) of the squared error of the k-day mean on the horizon's mean, in context std units"}
    write_results(args.name.replace("level_check", "level_check_mix"), meta, rows, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--datasets", nargs="+", default=["etth2"])
    parser.add_argument("--horizons", type=int, nargs="+", default=[336, 720])
    parser.add_argument("--stride", type=int, default=24)
    parser.add_argument("--lookback", type=int, default=2048)
    parser.add_argument("--name", default="level_check_cpu")
    parser.add_argument("--mix", type=int, metavar="N", help="no model: k-day means on N series of the shipped "
                        "model's pretraining mix and on the ETT splits (results: level_check_mix_*)")
    parser.add_argument("--seed", type=int, default=0, help="the mix's draws (--mix)")
    args = parser.parse_args()
    if args.lookback < 24 * max(DAYS):
        parser.error(f"--lookback must cover the longest mean ({24 * max(DAYS)} steps); got {args.lookback}")
    if args.mix is not None:
        return mix_main(args)
    model, rows = load_checkpoint(args.model).eval(), []
    for name in args.datasets:
        series = normalised(name)
        for h in args.horizons:
            context, truth = windows(series, TEST_START, TEST_END, args.lookback, h, args.stride)
            ours = model_forecast(model, context, h)
            profile = PROFILE(torch.from_numpy(context.transpose(0, 2, 1).reshape(-1, args.lookback)), h).median
            profile = profile[:, 0].numpy().reshape(len(context), -1, h).transpose(0, 2, 1)
            found = {"model": ours, "profile of 21 days": profile}
            means = day_means(context)
            found |= {f"mean of the last {d} days": np.repeat(means[:, None, :, k], h, 1) for k, d in enumerate(DAYS)}
            train_context, train_truth = windows(series, args.lookback, TEST_START, args.lookback, h, 1)
            design = np.c_[day_means(train_context).reshape(-1, len(DAYS)), np.ones(train_truth.size // h)]
            weights = np.linalg.lstsq(design, train_truth.mean(1).reshape(-1), rcond=None)[0]
            fitted = np.c_[means.reshape(-1, len(DAYS)), np.ones(means.size // len(DAYS))] @ weights
            found["level fitted on train + validation"] = np.repeat(fitted.reshape(len(context), 1, -1), h, 1)
            found |= {f"{w} model + {1 - w} profile (w read on test)": w * ours + (1 - w) * profile for w in BLENDS}
            for label, forecast in found.items():
                rows.append({"dataset": name, "horizon": h, "forecast": label, **split(forecast, truth)})
                print(rows[-1], flush=True)
    table = "\n".join(["| dataset | horizon | forecast | MSE | level | shape |", "|---|---|---|---|---|---|",
                       *(f"| {r['dataset']} | {r['horizon']} | {r['forecast']} | {r['MSE']:.3f} | {r['level']:.3f} | "
                         f"{r['shape']:.3f} |" for r in rows)])
    print(table)
    meta = {**header(), "model": args.model,
            "protocol": f"L={args.lookback}, test windows every {args.stride} step(s), channel-independent, median, "
                        "z-scored with train stats"}
    write_results(args.name, meta, rows, table)


if __name__ == "__main__":
    main()
