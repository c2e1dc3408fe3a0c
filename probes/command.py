"""``tsham probe NAME``: run a probe sweep and write the rows (CSV/parquet), the grouped table and the frontier."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_command(args) -> int:
    from tsham.probes.runner import frontier_plot, run_probe, summarise

    if args.train and args.model:
        raise ValueError("give --train (train a probe model per policy and budget) or --model (score a checkpoint), "
                         "not both")
    out = Path(args.output)
    if out.suffix.lower() in (".parquet", ".pq"):  # before anything trains: a failed write would lose every row
        import importlib.util

        if not any(importlib.util.find_spec(engine) for engine in ("pyarrow", "fastparquet")):
            raise ValueError(f"--output {out} needs a parquet engine (pip install 'tsham[parquet]', or pyarrow); or "
                             "write a .csv")
    for path in (out, Path(args.plot) if args.plot else None):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    from tsham.io import check_outputs

    check_outputs(args.output, plot=args.plot)  # a folder or an unwritable plot format, before anything trains
    model = None
    if args.model:
        from tsham.checkpoint import load_checkpoint

        model = load_checkpoint(args.model, args.device)
    sizes = {"patch_length": args.patch_length, "d_model": args.d_model, "kv_rope_base": args.kv_rope_base,
             "kv_own_qk": args.kv_own_qk}
    if args.context_length is not None:
        sizes["context_length"] = args.context_length
    rows = run_probe(args.name, args.level, args.policy, args.budget, args.seeds, args.n, args.steps, model=model,
                     device=args.device, train_batch=args.batch_size, lr=args.lr, utility=args.state_utility,
                     curriculum=args.curriculum, curriculum_steps=args.curriculum_steps,
                     curriculum_budget=args.curriculum_budget, curriculum_guide=args.curriculum_guide, **sizes)
    if out.suffix.lower() in (".parquet", ".pq"):
        rows.to_parquet(out, index=False)
    else:
        rows.to_csv(out, index=False)
    table = summarise(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {len(rows)} rows to {out}", file=sys.stderr)
    if args.plot:
        frontier_plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"a KV budget is a fraction in [0, 1]; got {text}")
    return value


def add_probe_parser(sub) -> None:
    from tsham.probes.generators import KNOBS, LEVELS, PROBES
    from tsham.probes.runner import POLICIES

    p = sub.add_parser("probe", help="preservation probe: train per (policy, budget) or load --model, then score")
    p.add_argument("name", choices=sorted(PROBES))
    p.add_argument("--level", default="easy",
                   help=f"one of {', '.join(LEVELS)}, optionally with knobs: 'medium:events=8,lag=0' (knobs: "
                        + "; ".join(f"{probe} {', '.join(knobs)}" for probe, knobs in KNOBS.items()) + ")")
    p.add_argument("--model", help="score this checkpoint at each --budget instead of training probe models (then "
                                   "--policy and the training options do not apply)")
    p.add_argument("--train", action="store_true",
                   help="train a probe model per (policy, budget), as without --model (for scripts that say so)")
    p.add_argument("--policy", nargs="+", default=["surprise", "random", "oracle"], choices=POLICIES)
    p.add_argument("--budget", type=_fraction, nargs="+", default=[0.05, 0.1],
                   help="KV fractions in [0, 1] (0 and 1 are added)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--n", type=int, default=256, help="test sequences per cell")
    p.add_argument("--steps", type=int, default=300, help="training steps per probe model")
    p.add_argument("--batch-size", type=int, default=16, help="training sequences per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--curriculum", metavar="LEVEL",
                   help="train each probe model on this easier level of the probe first, knobs allowed (e.g. "
                        "'easy:distractors=7' before --level 'medium:distractors=7': a read learned on short "
                        "contexts carries over to long ones where it is not learned from scratch)")
    p.add_argument("--curriculum-steps", type=int, metavar="N",
                   help="training steps on the --curriculum level, before the --level ones (default: half of --steps)")
    p.add_argument("--curriculum-budget", type=_fraction, metavar="FRACTION",
                   help="the routers' KV budget on the --curriculum level (each --budget from the --level steps on): "
                        "a level crowded with needles needs more to hold the queried one while the read is learned")
    p.add_argument("--curriculum-guide", action="store_true",
                   help="on the --curriculum level the probe's needles enter the scratchpad on top of what the "
                        "router keeps (the model learns to read them); the --level steps route by the router alone")
    p.add_argument("--patch-length", type=int, default=8)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--kv-rope-base", type=float, default=0.0,
                   help="rotary positions on the scratchpad (0: off); probe D's k-th most recent snapshot needs "
                        "them, the #6 grid uses 10000 there")
    p.add_argument("--kv-own-qk", action="store_true",
                   help="the scratchpad's own query and key projections instead of the GDN's (HamConfig.kv_own_qk)")
    p.add_argument("--context-length", type=int,
                   help="sizes the recency window for a budget (default: the probe's context length)")
    p.add_argument("--state-utility", type=int, default=0, metavar="N",
                   help="also fit ridge readouts of the target from the recurrent state, the scratchpad and both on "
                        "N sequences per cell, on the examples and on their needle-ablated twins (held-out R^2 "
                        "columns utility_*, utility_*_twin; 0: off)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="probe.csv", help="rows, one per example (CSV or parquet)")
    p.add_argument("--plot", help="PNG of recall skill against realised KV fraction")
    p.set_defaults(func=run_command)
