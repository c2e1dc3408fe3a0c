"""Can a model copy a repeating cycle? MASE against seasonal naive where seasonal naive is near-perfect.

    python -m tsham.experiments.copy_check [--models default runs/ft/x/model ...] [--name copy_check_cpu]

Three views per model, each at the model's exported KV threshold:
- noise-free sines of amplitude 3 at periods 8, 16 (the patch length: every patch token is the same), 24 and 37:
  mean absolute error of the median over 48 steps (predicting the mean scores 1.91, a copy 0);
- held-out ``repeating_pattern`` series (seeds unused by pretraining), period known: MASE of the median forecast
  and of seasonal naive at that period (naive is near-perfect by construction);
- M4 hourly (one window of 48 per series, as in GIFT-Eval): mean MASE, the share of series where the model's
  MASE is above seasonal naive's (season 24), and the median per-series ratio. Its worst series are near-exact
  daily cycles, so this is where smoothing the cycle costs the most.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tsham.datasets import load_m4
from tsham.datasets.synthetic import repeating_pattern
from tsham.experiments.common import header, write_results

from tsham.forecasting import TshamPipeline

HELD_OUT_SEED = 777_000  # pretraining draws its series from SeedSequence(0..) spawns, never this base


def _per_series(season: int | list[int], n: int) -> list[int]:
    return season if isinstance(season, list) else [season] * n


def mase(past: list[np.ndarray], truth: np.ndarray, forecast: np.ndarray, season: int | list[int]) -> np.ndarray:
    """Per-series MASE ``[N]`` of ``forecast`` ``[N, H]`` against ``truth`` ``[N, H]``, scaled by each past's
    in-sample seasonal-naive error at ``season`` (one per series or shared)."""
    pairs = zip(past, _per_series(season, len(past)), strict=True)
    scale = np.array([np.abs(p[s:] - p[:-s]).mean() for p, s in pairs])
    return np.abs(truth - forecast).mean(1) / np.maximum(scale, 1e-8)


def naive(past: list[np.ndarray], horizon: int, season: int | list[int]) -> np.ndarray:
    """Seasonal naive ``[N, H]``: the last cycle, repeated."""
    return np.stack([p[-s:][np.arange(horizon) % s] for p, s in zip(past, _per_series(season, len(past)),
                                                                      strict=True)])


def held_out_cycles(n: int, context: int, horizon: int) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """``n`` repeating_pattern series: contexts, truths ``[n, horizon]`` and their periods (recovered as the lag
    with the smallest in-sample copy error, the way a user would)."""
    past, truth, periods = [], [], []
    for i in range(n):
        x = repeating_pattern(context + horizon, np.random.default_rng([HELD_OUT_SEED, i])).values[:, 0]
        p = x[:context]
        errors = [np.abs(p[lag:] - p[:-lag]).mean() for lag in range(2, min(400, context // 2))]
        past.append(p)
        truth.append(x[context:])
        periods.append(2 + int(np.argmin(errors)))
    return past, np.stack(truth), periods


SINE_PERIODS = (8, 16, 24, 37)


def sine_errors(pipe: TshamPipeline, q: int, n: int = 16, context: int = 1024, horizon: int = 48) -> dict:
    """Mean absolute error of the median on ``n`` noise-free sines of amplitude 3 (random phases) per period."""
    rng, t = np.random.default_rng(HELD_OUT_SEED), np.arange(context + horizon)
    out = {}
    for period in SINE_PERIODS:
        x = 3 * np.sin(2 * np.pi * t[None] / period + rng.uniform(0, 2 * np.pi, (n, 1))).astype(np.float32)
        out[f"sine_{period}_abs_error"] = float(np.abs(pipe.predict(list(x[:, :context]), horizon)[:, q]
                                                       - x[:, context:]).mean())
    return out


def check(model: str | None, n: int = 256, context: int = 1024, horizon: int = 48) -> dict:
    """One model's row: MASE on held-out cycles (model, naive), M4 hourly (model, naive, share worse, median
    ratio) and the sines' absolute errors (:func:`sine_errors`)."""
    pipe = TshamPipeline.load(None if model in (None, "default") else model)
    q = list(pipe.quantiles).index(0.5)
    past, truth, periods = held_out_cycles(n, context, horizon)
    cycles = mase(past, truth, pipe.predict(past, horizon)[:, q], periods)
    cycles_naive = mase(past, truth, naive(past, horizon, periods), periods)
    train, test = load_m4("m4_hourly")
    train = [np.asarray(t, np.float32) for t in train]
    test = np.stack([np.asarray(t, np.float32) for t in test])
    m4 = mase(train, test, pipe.predict(train, test.shape[1])[:, q], 24)
    m4_naive = mase(train, test, naive(train, test.shape[1], 24), 24)
    return {"model": model or "default", "cycles_MASE": float(cycles.mean()), "cycles_naive_MASE":
            float(cycles_naive.mean()), "m4_hourly_MASE": float(m4.mean()), "m4_hourly_naive_MASE":
            float(m4_naive.mean()), "m4_hourly_share_worse": float((m4 > m4_naive).mean()),
            "m4_hourly_median_ratio": float(np.median(m4 / np.maximum(m4_naive, 1e-8))), **sine_errors(pipe, q)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default"], help="exported model folders, or 'default'")
    parser.add_argument("--name", default="copy_check_cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = [check(m) for m in args.models]
    sines = " | ".join(f"sine {p}" for p in SINE_PERIODS)
    lines = [f"| model | held-out cycles: MASE (naive) | M4 hourly: MASE (naive) | M4 hourly: share of series worse "
             f"than naive | M4 hourly: median ratio to naive | {sines} (abs error, amplitude 3) |",
             "|---|---|---|---|---|" + "---|" * len(SINE_PERIODS)]
    lines += [f"| {r['model']} | {r['cycles_MASE']:.2f} ({r['cycles_naive_MASE']:.2f}) | {r['m4_hourly_MASE']:.3f} "
              f"({r['m4_hourly_naive_MASE']:.3f}) | {r['m4_hourly_share_worse']:.0%} | "
              f"{r['m4_hourly_median_ratio']:.2f} | "
              + " | ".join(f"{r[f'sine_{p}_abs_error']:.2f}" for p in SINE_PERIODS) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    write_results(args.name, header(), rows, text)


if __name__ == "__main__":
    main()
