"""Where in the horizon a forecast loses: error and band width per lead on ETTh1 and ETTh2 short.

    python -m tsham.experiments.lead_check [--models default runs/x/model ...] [--patchtst] [--name lead_check_cpu]

On every test window of the two short-term ETT configurations (GIFT-Eval: 20 windows of 48 hours x 7 channels
each), per model: the CRPS (the scoreboard's weighted quantile loss), the median's mean absolute error at leads 1,
2, 4, 8, 16 and 48, and the mean width of its 10-90% band at the same leads. Beside them, the last observed value
and seasonal naive (24 h) as point forecasts, and with ``--patchtst`` gluonts PatchTST trained per configuration
exactly as the zero-shot scoreboard trains it. One hour ahead, a forecast should be about as good as the last value;
a band should be narrow there and follow the hours where the series is volatile.
"""

from __future__ import annotations

import argparse

import numpy as np
from tsham.experiments.common import header, write_results
from tsham.experiments.copy_check import naive
from tsham.experiments.zero_shot import train_patchtst

from tsham.evaluation import QUANTILES, gift_eval_data
from tsham.forecasting import TshamPipeline

LEADS = (1, 2, 4, 8, 16, 48)
CONFIGS = ("etth1", "etth2")


def crps(quantiles: np.ndarray, truth: np.ndarray) -> float:
    """Weighted quantile loss of ``quantiles [N, Q, H]`` at :data:`QUANTILES` against ``truth [N, H]``: twice the
    pinball loss, averaged over the levels, summed over windows and steps, divided by the sum of ``|truth|``."""
    q = np.asarray(QUANTILES)[None, :, None]
    err = truth[:, None] - quantiles
    return float(2 * np.maximum(q * err, (q - 1) * err).mean(1).sum() / np.abs(truth).sum())


def row(label: str, quantiles: np.ndarray, truth: np.ndarray) -> dict:
    """One table row: CRPS, the median's error and the 10-90% width per lead (a point forecast has no width)."""
    median = quantiles[:, len(QUANTILES) // 2]
    error = np.abs(median - truth).mean(0)
    width = (quantiles[:, -1] - quantiles[:, 0]).mean(0)
    return {"model": label, "CRPS": crps(quantiles, truth), "mae": [float(error[k - 1]) for k in LEADS],
            "width": None if np.ptp(quantiles, axis=1).max() == 0 else [float(width[k - 1]) for k in LEADS]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default"], help="checkpoint folders ('default': shipped)")
    parser.add_argument("--patchtst", action="store_true", help="add PatchTST trained per configuration (minutes)")
    parser.add_argument("--epochs", type=int, default=30, help="PatchTST's epochs (the scoreboard's 30)")
    parser.add_argument("--name", default="lead_check_cpu")
    args = parser.parse_args()
    rows = []
    for name in CONFIGS:
        data, _, h = gift_eval_data(name, "short")
        past = [np.asarray(entry["target"], np.float32) for entry in data.input]
        truth = np.stack([np.asarray(entry["target"], np.float32) for entry in data.label])
        Q = len(QUANTILES)
        points = {"last value": np.stack([np.full(h, p[-1]) for p in past]),
                  "seasonal naive (24 h)": naive(past, h, 24)}
        for label, point in points.items():
            rows.append({"config": name, **row(label, np.repeat(point[:, None], Q, 1), truth)})
        for model in args.models:
            pipe = TshamPipeline.load(None if model == "default" else model)
            if tuple(pipe.quantiles) != tuple(QUANTILES):
                raise ValueError(f"{model}: quantile levels {pipe.quantiles} are not the scoreboard's {QUANTILES}")
            rows.append({"config": name, **row(f"tsham {model}", pipe.predict(past, h), truth)})
        if args.patchtst:
            predictor, _ = train_patchtst(name, "short", args.epochs, "cpu")
            forecasts = list(predictor.predict(data.input))
            quantiles = np.stack([np.stack([f.quantile(q) for q in QUANTILES]) for f in forecasts])
            rows.append({"config": name, **row("PatchTST (ours, per dataset)", quantiles, truth)})
        print(*(r for r in rows if r["config"] == name), sep="\n", flush=True)
    leads = " / ".join(str(k) for k in LEADS)
    lines = [f"| config | forecast | CRPS | median's abs error at leads {leads} | 10-90% width at the same leads |",
             "|---|---|---|---|---|"]
    for r in rows:
        width = "" if r["width"] is None else " / ".join(f"{w:.2f}" for w in r["width"])
        mae = " / ".join(f"{m:.3f}" for m in r["mae"])
        lines.append(f"| {r['config']} short | {r['model']} | {r['CRPS']:.4f} | {mae} | {width} |")
    meta = {**header(), "windows": "every test window of GIFT-Eval's etth1/short and etth2/short (140 each)"}
    print(write_results(args.name, meta, rows, "\n".join(lines)).read_text())


if __name__ == "__main__":
    main()
