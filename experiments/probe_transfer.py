"""Scores probe cells' saved models on other levels of their probe, or at their nominal KV budget exactly: does what
a cell learned on one context length or crowding carry over to another, and what does its router recall when it
spends no more and no less than its budget?

    python -m tsham.experiments.probe_transfer runs/a8easy/cells/<cell>.ckpt ... \\
        --levels easy:distractors=7 medium:distractors=7 --n 256 --name probe_transfer_a8_cpu

Each state is a probe-sweep cell's loop state (``experiments/probe_sweep.py``): a cell cut with its device call
keeps one under ``<run>/cells/<cell>.ckpt``, and a finished cell keeps its trained weights as ``<cell>.final.pt``.
The cell's recipe (policy, budget, patch length, model size) comes from the preset that names the file, so only
states of known presets load. Each level is scored on ``--n`` test sequences of the sweep's test seed
(``TEST_SEED_OFFSET`` + the cell's seed) with the sweep's metrics (``tsham.probes.runner.evaluate_probe``); the
model is rebuilt for each level's context length (a budgeted router sizes nothing by it; recency windows would). Its
routers keep their trained thresholds, or with ``--calibrate`` route exactly the cell's budget of 64 other
sequences of the level (``tsham.probes.runner.calibrate_probe_budget``), or each of ``--budgets``: one router's
frontier from one trained cell. ``--rows`` keeps every test sequence's row in the sweep's columns, so
``probe_sweep report`` reads the targets and draws the frontier of policies scored side by side here; ``plot``
draws one from results files' cell means:

    python -m tsham.experiments.probe_transfer plot frontier.png experiments/results/probe_transfer_<name>.json ...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd
import torch
from tsham.experiments.common import header, write_results
from tsham.experiments.probe_sweep import FINAL_SUFFIX, PRESETS, cell_config, cell_name, cells, recipe_tag
from tsham.probes.resume import load_weights, read_loop_state
from tsham.probes.runner import TEST_SEED_OFFSET, calibrate_probe_budget, evaluate_probe, frontier_plot

from tsham.ham import budgetable_routers
from tsham.model import TshamModel

ANY_SEED = "*"  # the seed in :func:`sweep_cells`' keys: a sweep's --seeds runs any seed of a preset's cells


def sweep_cells() -> dict[str, dict]:
    """Every cell of every preset of the sweep, by file name (:func:`cell_name`) with :data:`ANY_SEED` for its
    seed."""
    return {cell_name({**c, "seed": ANY_SEED}): c for preset in PRESETS.values() for c in cells(preset)}


def cell_of(path: Path, known: dict[str, dict] | None = None) -> dict:
    """The sweep cell whose loop state ``path`` (a cut cell's ``<cell name>.ckpt`` or a finished one's
    ``<cell name>.final.pt``) is, at the seed its name says, from ``known`` (default :func:`sweep_cells`). Raises
    ``ValueError`` when no preset names the file."""
    known = sweep_cells() if known is None else known
    stem = next((path.name[:-len(s)] for s in (".ckpt", FINAL_SUFFIX) if path.name.endswith(s)), None)
    named = re.fullmatch(r"(.+)-s(\d+)-(d\d+x\d+-lr.+)", stem or "")  # <probe ... budget>-s<seed>-<recipe>
    key = f"{named[1]}-s{ANY_SEED}-{named[3]}" if named else None
    if key not in known:
        raise ValueError(f"{path}: not the loop state of a cell of a known preset (<cell name>.ckpt or "
                         f"<cell name>{FINAL_SUFFIX}, see experiments/probe_sweep.py PRESETS)")
    return {**known[key], "seed": int(named[2])}


def load_cell_model(path: Path, level: str, known: dict[str, dict] | None = None) -> tuple[TshamModel, dict, int]:
    """The model of the loop state ``path`` (:func:`cell_of`), built for ``level``'s context length, in eval
    mode; its cell (:func:`cell_of`); and the step the state was saved before."""
    cell, state = cell_of(path, known), read_loop_state(path)
    model = TshamModel(cell_config(cell, level))
    load_weights(path, model, state)
    return model.eval(), cell, int(state["next_step"])


def trained_at(cell: dict, step: int) -> str:
    """The level(s) a cell's state saved before ``step`` was trained on: a curriculum's first stage comes first, and
    the preset a cell started from (``init_from``) before both."""
    if cell.get("curriculum") is None:
        levels = cell["level"]
    elif step <= cell["curriculum_steps"]:
        levels = cell["curriculum"]
    else:
        levels = f"{cell['curriculum']}, then {cell['level']}"
    return f"{cell['init_from']}'s cell, then {levels}" if cell.get("init_from") else levels


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("states", nargs="+", type=Path,
                        help=f"cells' loop states (<run>/cells/<cell>.ckpt, or <cell>{FINAL_SUFFIX} of a finished one)")
    parser.add_argument("--levels", nargs="+", required=True, help="levels of the cells' probe, knobs allowed")
    parser.add_argument("--n", type=int, default=256, help="test sequences per state and level")
    parser.add_argument("--calibrate", action="store_true",
                        help="before scoring, set each budgeted router's threshold to route the cell's budget on 64 "
                        "other sequences of the level (runner.calibrate_probe_budget); default: the trained threshold")
    parser.add_argument("--budgets", nargs="+", type=float,
                        help="with --calibrate: route each of these KV fractions (0 < b < 1) instead of the cell's own "
                        "budget, one row each (cells without a budgetable router are scored once, as they are)")
    parser.add_argument("--rows", type=Path, help="also write one row per test sequence here (CSV, gzip by suffix), "
                        "in the sweep's columns: `probe_sweep report` takes it")
    parser.add_argument("--recipe", help="with --rows: label every row with this recipe, so the report compares "
                        "cells trained by different recipes as one group (default: each cell's own recipe)")
    parser.add_argument("--name", help="write experiments/results/<name>.md and .json")
    parser.add_argument("--note", help="where the states come from (machine, run, revision), for the results' header")
    parser.add_argument("--device", default="cpu", help="score on this torch device (cuda: contexts of thousands of "
                        "tokens and 1000 sequences a level, which a CPU takes hours for)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1; got {args.n}")
    if args.budgets is not None and not args.calibrate:
        parser.error("--budgets sets the calibrated fraction: give --calibrate too")
    if args.budgets is not None and not all(0 < b < 1 for b in args.budgets):
        parser.error(f"--budgets must be KV fractions strictly between 0 and 1; got {args.budgets}")
    if args.recipe is not None and args.rows is None:
        parser.error("--recipe labels the rows of --rows: give --rows too")
    rows, examples, known = [], [], sweep_cells()
    for path in args.states:
        for level in args.levels:
            model, cell, step = load_cell_model(path, level, known)
            model.to(args.device)
            test_seed = TEST_SEED_OFFSET + cell["seed"]
            # oracle and event cells (budget NaN) and recency windows take no threshold; none and all keep 0 and 1
            budgeted = args.calibrate and 0 < cell["budget"] < 1 and bool(budgetable_routers(model))
            for budget in (args.budgets or [cell["budget"]]) if budgeted else [cell["budget"]]:
                if budgeted:
                    calibrate_probe_budget(model, cell["probe"], level, budget, test_seed, args.device)
                row, scored = score_row(model, path, cell, step, level, test_seed, budget, budgeted, args)
                rows.append(row)
                examples.append(scored.assign(probe=cell["probe"], level=level, policy=cell["policy"], budget=budget,
                                              seed=cell["seed"], patch_length=cell["patch_length"],
                                              recipe=args.recipe or recipe_tag(cell)))
                if args.rows is not None:  # after every score: a run cut by its device call keeps what it scored
                    args.rows.parent.mkdir(parents=True, exist_ok=True)
                    pd.concat(examples, ignore_index=True).to_csv(args.rows, index=False)
    table = ("| policy | seed | budget | threshold | trained at (step) | scored at | RS | capture "
             "| attention mass on the needle | wake capture | attention mass on the wake | KV fraction |\n"
             + "|---" * 12 + "|\n"
             + "\n".join(f"| {r['policy']} | {r['seed']} | {r['budget']:g} | {r['threshold']} | {r['trained_at']} "
                         f"({r['step']}) | {r['level']} | {r['RS']:.3f} | {r['capture']:.2f} | "
                         f"{r['needle_attention']:.3f} | {r['wake_capture']:.2f} | {r['wake_attention']:.3f} | "
                         f"{r['kv_fraction']:.3f} |" for r in rows))
    print(table)
    if args.name:
        meta = {**header(), **({"states": args.note} if args.note else {}), "torch threads": torch.get_num_threads(),
                "device": args.device, "test sequences": args.n}
        print(write_results(args.name, meta, rows, table))


def score_row(model: TshamModel, path: Path, cell: dict, step: int, level: str, test_seed: int, budget: float,
              budgeted: bool, args: argparse.Namespace) -> tuple[dict, pd.DataFrame]:
    """One row of the results: ``model`` (the cell at ``path``, trained ``step`` steps) scored on ``args.n`` test
    sequences of ``level`` drawn with ``test_seed``, with its routers as they are set (calibrated to ``budget`` where
    ``budgeted``), and the ``args.n`` rows it averages (:func:`tsham.probes.runner.evaluate_probe`)."""
    scored = evaluate_probe(model, cell["probe"], level, args.n, test_seed, {}, args.device)
    row = {"cell": path.name, "policy": cell["policy"], "seed": cell["seed"], "budget": budget,
           "threshold": "calibrated" if budgeted else "trained" if budgetable_routers(model) else "fixed",
           "trained_at": trained_at(cell, step), "step": step, "level": level, "RS": float(scored.RS.mean()),
           "capture": float(scored.capture_rate.mean()), "needle_attention": float(scored.needle_attention.mean()),
           "wake_capture": float(scored.wake_capture.mean()), "wake_attention": float(scored.wake_attention.mean()),
           "kv_fraction": float(scored.kv_fraction.mean())}
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "cell"),
          flush=True)
    return row, scored


def results_frame(paths: list[Path], skip: tuple[str, ...] = (), known: dict[str, dict] | None = None
                  ) -> pd.DataFrame:
    """The rows of results files this module wrote (``experiments/results/<name>.json``), one per scored cell,
    level and budget: probe, level, policy, budget (the calibrated one, else the cell's), seed, RS, kv_fraction,
    threshold, cell. A cell scored alike in several files counts once (the scores are deterministic: the files
    agree); cells whose file name holds any of ``skip`` are left out."""
    found = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no results file {path}")
        for row in json.loads(Path(path).read_text())["rows"]:
            if any(s in row["cell"] for s in skip):
                continue
            cell = cell_of(Path(row["cell"]), known)
            found.append({"probe": cell["probe"], "level": row["level"], "policy": row["policy"],
                          "budget": row.get("budget", cell["budget"]), "seed": row["seed"], "RS": row["RS"],
                          "kv_fraction": row["kv_fraction"], "threshold": row["threshold"], "cell": row["cell"]})
    if not found:
        raise ValueError(f"no rows in {[str(p) for p in paths]} (skip {list(skip)})")
    return pd.DataFrame(found).drop_duplicates(["cell", "level", "budget", "threshold"], ignore_index=True)


def plot_main(argv: list[str]) -> None:
    """``plot OUT.png RESULTS.json ... [--skip SUBSTRING ...]``: the frontier (:func:`frontier_plot`) of the cell
    means in the results files, which must share one probe and level."""
    parser = argparse.ArgumentParser(prog="probe_transfer plot", description=plot_main.__doc__.split(":")[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--skip", nargs="+", default=(), help="leave out cells whose file name holds any of these")
    args = parser.parse_args(argv)
    rows = results_frame(args.results, tuple(args.skip))
    if rows[["probe", "level"]].drop_duplicates().shape[0] != 1:
        parser.error(f"the rows span several probes or levels: {sorted(set(zip(rows.probe, rows.level, strict=True)))}")
    frontier_plot(rows.drop(columns=["threshold", "cell"]), args.png)
    print(args.png)


if __name__ == "__main__":
    main()
