"""The seed band of LTSF fine-tunes: per dataset and horizon, each run's MSE (on every window and on PatchTST/64's
windows), their mean and standard deviation, and how many runs (and whether the mean) beat PatchTST/64's published
number on its windows.

    python -m tsham.experiments.ltsf_band experiments/results/ltsf_etth2_L2048_spread-msev.json \\
        experiments/results/ltsf_etth2_L2048_seed*_spread-msev.json --name ltsf_etth2_L2048_band_spread-msev

A fine-tune whose validation months do not predict its test months exports a step that differs by seed; one run
then says little about the recipe, and the best of several says too much.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from tsham.experiments.common import header, write_results


def run_seed(meta: dict) -> int:
    """The fine-tune's ``--seed`` as its results' meta records the command (0 when not given)."""
    found = re.search(r"--seed (\d+)", meta.get("finetune", ""))
    return int(found.group(1)) if found else 0


# what may differ between the runs of one recipe: the seed, the run's folder and its CSV, the wall-clock cap (a
# cap with different loads on a shared GPU gives a different number of steps either way; the band's meta says)
PER_RUN = re.compile(r" --(seed|out|input|max-minutes) \S+| \(minutes cap [^)]*\)")


def recipe(meta: dict) -> tuple[str, str, str]:
    """The parts of an ``ltsf`` results' meta that one recipe's runs share: the model, the protocol and the fine-tune
    command without its per-run options (:data:`PER_RUN`)."""
    return meta.get("model", ""), meta.get("protocol", ""), PER_RUN.sub("", meta.get("finetune", ""))


def band(paths: list[Path]) -> list[dict]:
    """``ltsf`` results (JSON) of one recipe at several seeds -> one row per (dataset, horizon): seeds, exported
    steps, the MSE of each run on every window (``every``) and on PatchTST/64's windows (``its``), their means and
    sample standard deviations (NaN for one run), the published number, how many runs beat it and whether the mean
    does. Raises ValueError for runs of different recipes (:func:`recipe`) or two runs of one seed."""
    runs: dict[tuple[str, int], list[tuple[int, dict]]] = {}
    recipes = {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        recipes[str(path)] = recipe(result["meta"])
        for row in result["rows"]:
            runs.setdefault((row["dataset"], row["horizon"]), []).append((run_seed(result["meta"]), row))
    if len(set(recipes.values())) > 1:
        first = next(iter(recipes.values()))
        odd = [path for path, r in recipes.items() if r != first]
        raise ValueError(f"ltsf_band: {', '.join(odd)} ran another recipe than {next(iter(recipes))} (model, protocol "
                         "or fine-tune options besides --seed, --out, --input and --max-minutes): a band is of one "
                         "recipe")
    out = []
    for (dataset, horizon), found in sorted(runs.items()):
        found.sort(key=lambda pair: pair[0])
        seeds = [s for s, _ in found]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"ltsf_band: {dataset} {horizon} has two runs of one seed ({seeds}); give each run once")
        every = np.array([r["MSE"] for _, r in found])
        its = np.array([r["MSE_patchtst_windows"] for _, r in found])
        published = found[0][1]["PatchTST64_MSE"]
        spread = (lambda x: float(x.std(ddof=1))) if len(found) > 1 else (lambda x: float("nan"))
        out.append({"dataset": dataset, "horizon": horizon, "seeds": seeds,
                    "steps": [r.get("best_step", r.get("finetune_steps")) for _, r in found],
                    "every": every.tolist(), "every_mean": float(every.mean()), "every_sd": spread(every),
                    "its": its.tolist(), "its_mean": float(its.mean()), "its_sd": spread(its),
                    "published": published, "runs_below": int((its < published).sum()),
                    "mean_below": bool(its.mean() < published)})
    return out


def table(rows: list[dict]) -> str:
    """The band as a markdown table."""
    def runs(values):
        return " / ".join(f"{v:.3f}" for v in values)

    lines = ["| dataset | horizon | seeds (exported steps) | MSE, every window: per seed (mean ± sd) "
             "| MSE, PatchTST/64's windows: per seed (mean ± sd) | PatchTST/64 (published) | seeds below it "
             "| mean below it |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['horizon']} | {', '.join(map(str, r['seeds']))} "
                     f"({', '.join(map(str, r['steps']))}) | {runs(r['every'])} ({r['every_mean']:.3f} ± "
                     f"{r['every_sd']:.3f}) | {runs(r['its'])} ({r['its_mean']:.3f} ± {r['its_sd']:.3f}) | "
                     f"{r['published']:.3f} | {r['runs_below']} of {len(r['seeds'])} | "
                     f"{'yes' if r['mean_below'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="ltsf results (.json) of one recipe, one per seed")
    parser.add_argument("--name", required=True, help="results name (experiments/results/<name>.md and .json)")
    args = parser.parse_args()
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    rows = band(args.results)
    text = table(rows)
    print(text)
    caps = sorted({m.group(1) for p in args.results for m in re.finditer(
        r"--max-minutes (\S+)", json.loads(p.read_text())["meta"].get("finetune", ""))})
    write_results(args.name, {**header(), "runs": ", ".join(str(p) for p in args.results),
                              "minutes caps": ", ".join(caps) or "none"}, rows, text)


if __name__ == "__main__":
    main()
