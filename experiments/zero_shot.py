"""Zero-shot scoreboard on the eight offline GIFT-Eval configurations, at several KV budgets, with baselines.

    # baselines once (seasonal naive + gluonts PatchTST trained per dataset on the part before the test windows)
    python -m tsham.experiments.zero_shot baselines [--epochs 30]
    # tsham at KV budgets 0 (pure GDN), 5%, 10%, 25%, 100% (full attention); merges the baselines into one table
    python -m tsham.experiments.zero_shot tsham [--model PATH] [--budgets 0 0.05 0.1 0.25 1]

Per budget, every router's threshold is calibrated on the contexts of that configuration (past only, never the
forecast window; ``TshamPipeline.set_kv_budget``) and the realised fraction is reported. Ratios to seasonal
naive use the naive scores computed here on the same files; the published rows of REFERENCE.md are printed
beside (their ratios use GIFT-Eval's own naive scores, which match ours on M4 exactly and on ETT within 2-3%).
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
from gluonts.time_feature import get_seasonality
from tsham.experiments.common import RESULTS, header, write_results

from tsham.evaluation import CONFIGS, SeasonalNaiveQuantiles, evaluate, gift_eval_data
from tsham.forecasting import TshamPipeline, TshamPredictor

BASELINES = RESULTS / "zero_shot_baselines.json"
# REFERENCE.md, per configuration in CONFIGS order: (MASE, CRPS)
PUBLISHED = {
    "TempoPFN": [(0.808, 0.032), (2.493, 0.043), (0.840, 0.183), (1.300, 0.269), (1.431, 0.283), (0.744, 0.065),
                 (1.061, 0.109), (1.011, 0.107)],
    "Chronos-2": [(0.788, 0.023), (2.026, 0.037), (0.787, 0.171), (1.274, 0.261), (1.380, 0.275), (0.736, 0.064),
                  (1.090, 0.109), (1.048, 0.105)],
    "PatchTST (published)": [(1.400, 0.039), (2.340, 0.040), (0.893, 0.190), (1.390, 0.273), (1.470, 0.297),
                             (0.858, 0.074), (1.270, 0.125), (1.430, 0.130)],
    "seasonal_naive (published)": [(1.193, 0.038), (2.777, 0.061), (0.977, 0.240), (1.568, 0.435), (1.479, 0.471),
                                   (0.923, 0.089), (1.238, 0.186), (1.128, 0.208)],
}
PUBLISHED_GEO = {"TempoPFN": (0.845, 0.662), "Chronos-2": (0.814, 0.611), "PatchTST (published)": (0.995, 0.722),
                 "seasonal_naive (published)": (1.0, 1.0)}


def contexts(data) -> list[np.ndarray]:
    """The context (past) of every test instance of a configuration."""
    return [np.asarray(entry["target"], dtype=np.float32) for entry in data.input]


def naive_scores(name: str, term: str) -> dict:
    """Seasonal naive's MASE / CRPS on one configuration, with GIFT-Eval's normal quantiles."""
    data, freq, h = gift_eval_data(name, term)
    return evaluate(SeasonalNaiveQuantiles(prediction_length=h, season_length=get_seasonality(freq)), data, freq)


def train_patchtst(name: str, term: str, epochs: int, device: str):
    """gluonts PatchTST trained on one configuration's series cut before its first test window (seed 0);
    returns (predictor, context length)."""
    from gluonts.dataset.split import split
    from gluonts.torch.model.patch_tst import PatchTSTEstimator

    data, _, h = gift_eval_data(name, term)
    train_part, _ = split(data.dataset, offset=-h * (len(data.input) // len(data.dataset)))
    context = min(512, 10 * h) if name.startswith("ett") else 10 * h
    torch.manual_seed(0)
    estimator = PatchTSTEstimator(
        prediction_length=h, context_length=context, patch_len=16, stride=8, d_model=32, nhead=4,
        num_encoder_layers=2, batch_size=32, num_batches_per_epoch=50, lr=1e-3,
        trainer_kwargs={"max_epochs": epochs, "accelerator": device, "enable_progress_bar": False,
                        "enable_model_summary": False, "logger": False,
                        "default_root_dir": tempfile.mkdtemp(prefix="tsham-patchtst-")},  # not the cwd
    )
    return estimator.train(train_part), context


def run_baselines(epochs: int, device: str, configs=CONFIGS) -> dict:
    """Seasonal naive and PatchTST (gluonts, trained per configuration) on each configuration."""
    rows = {}
    for name, term in configs:
        data, freq, h = gift_eval_data(name, term)
        key = f"{name}/{term}"
        naive = naive_scores(name, term)
        start = time.perf_counter()
        predictor, context = train_patchtst(name, term, epochs, device)
        patchtst = evaluate(predictor, data, freq)
        rows[key] = {"naive": naive, "PatchTST": patchtst, "patchtst_seconds": round(time.perf_counter() - start, 1),
                     "patchtst_context": context}
        print(key, rows[key], flush=True)
    return {"meta": {**header(), "patchtst": f"gluonts PatchTSTEstimator, {epochs} epochs x 50 batches of 32, "
                     "patch 16 stride 8, d_model 32, 2 layers, context min(512, 10h) on ETT and 10h on M4, "
                     "StudentT output, seed 0"}, "rows": rows}


def run_tsham(model: str | None, budgets: list[float], device: str, calibration: int, configs=CONFIGS
              ) -> list[dict]:
    """tsham's MASE / CRPS and realised KV fraction per (budget, configuration)."""
    rows = []
    for budget in budgets:
        pipe = TshamPipeline.load(model, device=device)  # fresh thresholds per budget
        for name, term in configs:
            data, freq, h = gift_eval_data(name, term)
            past = contexts(data)
            pick = np.random.default_rng(0).permutation(len(past))[:calibration]
            pipe.set_kv_budget(budget, [past[i] for i in pick], horizon=h)
            start = time.perf_counter()
            scores = evaluate(TshamPredictor(pipe, h), data, freq)
            seconds = time.perf_counter() - start
            realised = pipe.kv_fraction([past[i] for i in pick], horizon=h)
            rows.append({"budget": budget, "config": f"{name}/{term}", **scores, "kv_realised": realised,
                         "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    return rows


def geo(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def table(rows: list[dict], baselines: dict) -> tuple[str, list[dict]]:
    """Per configuration: MASE / CRPS of each entry; last columns the geo-mean ratios to our seasonal naive."""
    keys = [f"{n}/{t}" for n, t in CONFIGS]
    naive = [baselines[k]["naive"] for k in keys]
    entries = {"seasonal naive (ours)": naive,
               "PatchTST (ours, per dataset)": [baselines[k].get("PatchTST") for k in keys]}
    by_budget = pd.DataFrame(rows)
    for budget, group in by_budget.groupby("budget", sort=True):
        group = group.set_index("config").loc[keys]
        label = {0.0: "tsham KV 0% (pure GDN)", 1.0: "tsham KV 100% (full attn)"}.get(
            budget, f"tsham KV {budget:.0%}")
        entries[f"{label}, realised {group['kv_realised'].mean():.1%}"] = group[["MASE", "CRPS"]].to_dict("records")
    out, lines = [], []
    lines.append("| model | " + " | ".join(keys) + " | geo-mean ratio MASE / CRPS |")
    lines.append("|---" * (len(keys) + 2) + "|")
    for label, scores in entries.items():
        pairs = [(s, n) for s, n in zip(scores, naive, strict=True) if s is not None]
        ratio_m = geo([s["MASE"] / n["MASE"] for s, n in pairs])
        ratio_c = geo([s["CRPS"] / n["CRPS"] for s, n in pairs])
        cells = ["not run" if s is None else f"{s['MASE']:.3f}/{s['CRPS']:.3f}" for s in scores]
        over = "" if len(pairs) == len(keys) else f" (over the {len(pairs)} configs run)"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | **{ratio_m:.3f} / {ratio_c:.3f}**{over} |")
        out.append({"model": label, "MASE_ratio": ratio_m, "CRPS_ratio": ratio_c, "per_config": scores})
    lines.append("| *published (REFERENCE.md; ratios to GIFT-Eval's naive)* |" + " |" * (len(keys) + 1))
    for label, scores in PUBLISHED.items():
        cells = [f"{m:.3f}/{c:.3f}" for m, c in scores]
        m, c = PUBLISHED_GEO[label]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {m:.3f} / {c:.3f} |")
    return "\n".join(lines), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    base = sub.add_parser("baselines", help="seasonal naive + PatchTST per configuration -> results JSON")
    base.add_argument("--epochs", type=int, default=30)
    base.add_argument("--configs", nargs="+", help="dataset/term keys to (re)run, merged into the results JSON")
    base.add_argument("--naive-only", action="store_true", help="rescore seasonal naive only (seconds), keeping the "
                      "PatchTST rows of the results JSON")
    model = sub.add_parser("tsham", help="tsham at several KV budgets, merged with the baselines")
    model.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    model.add_argument("--budgets", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.25, 1.0])
    model.add_argument("--calibration", type=int, default=256, help="contexts per configuration for the budget")
    model.add_argument("--name", default="zero_shot")
    model.add_argument("--configs", nargs="+", help="dataset/term keys (default: all eight)")
    model.add_argument("--rows", help="reuse the rows JSON of an earlier run instead of evaluating")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.what == "baselines" and args.naive_only:
        old = json.loads(BASELINES.read_text())
        for name, term in CONFIGS:
            old["rows"][f"{name}/{term}"]["naive"] = naive_scores(name, term)
        made = header()
        old["meta"][f"naive {made['date']}"] = (f"seasonal naive rescored with normal quantiles (GIFT-Eval's) by "
                                                f"`{made['command']}` at rev {made['revision']}")
        BASELINES.write_text(json.dumps(old, indent=1))
        print(f"wrote {BASELINES}")
        return
    if args.what == "baselines":
        configs = [tuple(c.split("/")) for c in args.configs] if args.configs else CONFIGS
        result = run_baselines(args.epochs, "gpu" if device == "cuda" else "cpu", configs)
        RESULTS.mkdir(parents=True, exist_ok=True)
        if args.configs and BASELINES.is_file():  # fill in these configurations, keep the others and say so
            old = json.loads(BASELINES.read_text())
            result["meta"] = {**old["meta"], f"update {result['meta']['date']}": (
                f"{', '.join(result['rows'])} by `{result['meta']['command']}` at rev {result['meta']['revision']} "
                f"on {result['meta']['machine']}")}
            result["rows"] = {**old["rows"], **result["rows"]}
        BASELINES.write_text(json.dumps(result, indent=1))
        print(f"wrote {BASELINES}")
        return
    configs = [tuple(c.split("/")) for c in args.configs] if args.configs else CONFIGS
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())
    else:
        rows = run_tsham(args.model, args.budgets, device, args.calibration, configs)
        (RESULTS / f"{args.name}_rows.json").write_text(json.dumps(rows, indent=1))
    if not BASELINES.is_file() or configs != CONFIGS:
        print(f"rows written to {RESULTS / f'{args.name}_rows.json'}; the table needs all eight configurations and "
              f"{BASELINES.name} (`python -m tsham.experiments.zero_shot baselines`), then --rows")
        return
    baselines = json.loads(BASELINES.read_text())
    text, summary = table(rows, baselines["rows"])
    meta = {**header(), "model": args.model or "tsham/assets/default (card.json)",
            "baselines": f"{BASELINES.name}: {baselines['meta']['patchtst']} ({baselines['meta']['machine']}, "
                         f"rev {baselines['meta']['revision']})",
            "note": "zero-shot: no evaluation set in pretraining; cells are MASE/CRPS; budgets calibrated per "
                    "configuration on up to --calibration contexts (past only); realised = mean over configs"}
    print(text)
    write_results(args.name, meta, rows + summary, text)


if __name__ == "__main__":
    main()
