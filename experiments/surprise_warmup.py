"""Does a warm-up help surprise routing? Surprise at a budget with and without ``warmup`` tokens it never routes.

    python -m tsham.experiments.surprise_warmup mqar easy --warmup 0 8 --seeds 0 1 2 --name surprise_warmup_mqar_cpu

A recurrent state starts empty, so the first tokens of a context all surprise it and a surprise router spends its
budget there (the routing benchmark's maps: 84-100% of surprise's tokens in the first quarter of real contexts).
``SurpriseRouter(warmup=W)`` never routes the first W tokens. For each (warmup, seed) this trains the routing
benchmark's probe recipe (:func:`probe_config`, d_model 64, 2 layers, batch 64, 1500 steps) with surprise at
``--budget``, then reports on ``--n-test`` test sequences the recall skill, the capture of the needle, the realised
KV fraction and the share of routed context tokens in the context's first tenth (uniform routing: 0.10). One
process per cell, ``--workers`` at once.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics

import torch
from tsham.experiments.common import header, write_results


def run_cell(probe: str, level: str, budget: float, warmup: int, seed: int, steps: int, batch_size: int, lr: float,
             n_test: int) -> dict:
    """Trains one surprise-routed probe model with ``warmup`` and scores it; returns one result row."""
    from tsham.experiments.probe_sweep import PROBE_SETTINGS
    from tsham.experiments.routing_positions import routed_shares
    from tsham.probes.generators import PROBES
    from tsham.probes.runner import (
        TEST_SEED_OFFSET,
        evaluate_probe,
        probe_config,
        probe_context_length,
        probe_forward,
        train_probe_model,
    )

    torch.set_num_threads(1)
    setting = PROBE_SETTINGS[probe]
    config = probe_config("surprise", budget, patch_length=setting["patch_length"], d_model=64, n_layers=2,
                          context_length=probe_context_length(probe, level),
                          kv_rope_base=setting.get("kv_rope_base", 0.0))
    config.ham.router_kwargs["warmup"] = warmup
    model = train_probe_model(probe, level, config, steps, batch_size, lr, seed=seed)
    rows = evaluate_probe(model, probe, level, n_test, TEST_SEED_OFFSET + seed, {})
    with torch.no_grad():
        out = probe_forward(model, PROBES[probe](min(256, n_test), level, seed=TEST_SEED_OFFSET + seed), "cpu")
    return {"warmup": warmup, "seed": seed, "RS": float(rows["RS"].mean()),
            "capture": float(rows["capture_rate"].mean()), "kv": float(rows["kv_fraction"].mean()),
            "first_tenth": float(routed_shares(model, out)[:, 0].mean())}  # mean over layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe")
    parser.add_argument("level")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, nargs="+", default=[0, 8], help="tokens never routed, one run each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="default: what the routing benchmark chose for "
                        "surprise on MQAR")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", help="write experiments/results/<name>.md and .json")
    args = parser.parse_args()
    meta = {**header(), "run": f"{args.probe} {args.level}, surprise at {args.budget:g}, {args.steps} steps of "
                               f"{args.batch_size}, lr {args.lr:g}, {args.n_test} test sequences"}  # the code that runs
    cells = [(args.probe, args.level, args.budget, w, s, args.steps, args.batch_size, args.lr, args.n_test)
             for w in args.warmup for s in args.seeds]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.starmap(run_cell, cells)
    summary = []
    for w in args.warmup:
        mine = [r for r in rows if r["warmup"] == w]
        mean = {k: statistics.mean(r[k] for r in mine) for k in ("RS", "capture", "kv", "first_tenth")}
        std = statistics.stdev(r["RS"] for r in mine) if len(mine) > 1 else float("nan")
        summary.append({"warmup": w, **mean, "RS_std": std, "seeds": len(mine)})
    table = ("| warmup (tokens) | recall skill, mean +- std (seeds) | capture | realised KV | routed share in the "
             "first tenth |\n|---|---|---|---|---|\n") + "\n".join(
        f"| {r['warmup']} | {r['RS']:.3f} +- {r['RS_std']:.3f} ({r['seeds']}) | {r['capture']:.3f} | {r['kv']:.3f} | "
        f"{r['first_tenth']:.3f} |" for r in summary)
    print(table)
    if args.name:
        write_results(args.name, meta, rows, table)


if __name__ == "__main__":
    main()
