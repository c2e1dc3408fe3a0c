"""The routing-policy benchmark (#7): which memory signal wins where, on one backbone, side by side.

    python -m tsham.experiments.routing_policies run --preset full --workers 28 --device cuda --out runs/policies
    python -m tsham.experiments.routing_policies throughput runs/policies   # router overhead, each policy alone
    python -m tsham.experiments.routing_policies report runs/policies --name routing_policies
    tsham bench --out runs/bench          # the quick mode: tiny models on the CPU in minutes, run + report

Every cell trains one small forecaster from scratch: (task, policy, nominal KV budget, seed, learning rate).
Policies share the backbone and its size (router parameters are counted; they stay under 1%), the training batches
of a seed (so the same tokens) and the learning-rate sweep: each (task, policy) is trained at every rate of the
preset at the sweep budget with a seed of its own, the rate with the best validation score is kept, and the policy's
reported cells (every budget and seed) train at that rate. Tasks are the probes (test metric: recall skill, higher
is better) and forecasting (pinball loss on held-out synthetic windows; the GIFT-Eval configurations' geo-mean MASE
ratio to seasonal naive; ETTh LTSF MSE; lower is better). Each cell records its realised KV fraction (overall and
per layer), training throughput and peak GPU memory, and, on forecasting tasks, which patch tokens it routed on a
real series (the routing map). ``report`` (:mod:`tsham.experiments.routing_report`) turns the cells into the tables
and plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from functools import partial
from pathlib import Path

POLICIES = ("surprise", "uncertainty", "event", "learned", "composite", "random", "recency", "all", "none", "oracle")
FORECAST_TASKS = {
    # trained on the synthetic pretraining mix plus the statsmodels series, tested on held-out synthetic windows and
    # (``gift``) zero-shot on the eight offline GIFT-Eval configurations, which the report shows as the task "gift":
    # one training serves both, and its learning rate is chosen on the same held-out synthetic windows either way
    "synthetic": {"kind": "forecast", "test": "synthetic", "patch_length": 16, "context_length": 512, "horizon": 64,
                  "gift": True},
    # trained on ETTh1's LTSF train split, tested on its test split at horizon 96 (MSE, z-scored)
    "ltsf_etth1": {"kind": "forecast", "test": "ltsf", "dataset": "etth1", "patch_length": 16, "context_length": 512,
                   "horizon": 96},
}
RECIPE = {"steps": 1500, "batch_size": 64, "d_model": 64, "n_layers": 2, "n_test": 1000, "n_val": 256}
PRESETS = {
    "full": {"tasks": ["synthetic", "ltsf_etth1", "scheduled_event", "mqar", "delayed_action", "rare_motif",
                       "cross_channel_binding"],
             "policies": POLICIES, "budgets": (0.02, 0.05, 0.1, 0.25), "seeds": (0, 1, 2),
             # 3e-2 since the first GPU slice: most ETTh1 policies chose 1e-2, the old grid's edge
             "lrs": (1e-3, 3e-3, 1e-2, 3e-2),
             "sweep_budget": 0.1, "sweep_seed": 1000, "synthetic_series": 2000, **RECIPE},
    # minutes on a 2-core CPU: tiny models, one probe and held-out synthetic forecasting
    "quick": {"tasks": ["mqar@easy", "synthetic@quick"], "policies": POLICIES, "budgets": (0.1, 0.25),
              "seeds": (0, 1), "lrs": (3e-3, 1e-2), "sweep_budget": 0.1, "sweep_seed": 1000, "synthetic_series": 48,
              "steps": 30, "batch_size": 8, "d_model": 16, "n_layers": 2, "n_test": 64, "n_val": 32},
}
QUICK_TASKS = {"mqar@easy": {"kind": "probe", "probe": "mqar", "level": "easy", "patch_length": 4},
               "synthetic@quick": {**FORECAST_TASKS["synthetic"], "context_length": 128, "horizon": 32, "gift": False}}


def task_spec(name: str) -> dict:
    """A task by name: a probe of the #6 sweep (its level and patch length), a forecasting task, or a quick one."""
    from tsham.experiments.probe_sweep import PROBE_SETTINGS

    if name in QUICK_TASKS:
        return QUICK_TASKS[name]
    if name in FORECAST_TASKS:
        return FORECAST_TASKS[name]
    if name in PROBE_SETTINGS:
        return {"kind": "probe", "probe": name, **PROBE_SETTINGS[name]}
    raise ValueError(f"unknown task {name!r}; known: {sorted([*PROBE_SETTINGS, *FORECAST_TASKS, *QUICK_TASKS])}")


def task_pairs(name: str, policies, budgets) -> list[tuple[str, float]]:
    """The (policy, nominal budget) cells of one task: budgetable policies at every budget, ``none`` at 0 and
    ``all`` at 1, ``oracle`` on probes only and ``event`` / ``composite`` only where the task has flags
    (elsewhere they would repeat ``none`` and ``surprise``); oracle and event budgets are NaN."""
    from tsham.probes.runner import FIXED_BUDGET, probe_cells

    spec = task_spec(name)
    if spec["kind"] == "probe":
        return probe_cells(spec["probe"], spec["level"], policies, budgets, controls=False)
    flagged = spec["test"] == "synthetic"  # the synthetic mix has flagged layouts; GIFT and LTSF have none
    pairs = []
    for policy in policies:
        if policy == "oracle" or (policy in ("event", "composite") and not flagged):
            continue
        if policy in ("none", "all"):
            pairs.append((policy, float(policy == "all")))
        elif policy == "event":
            pairs.append((policy, FIXED_BUDGET))
        else:
            pairs += [(policy, b) for b in budgets]
    return pairs


def sweep_budget_of(pairs: list[tuple[str, float]], policy: str, budget: float) -> float:
    """The budget a policy's learning-rate sweep runs at: ``budget`` if it has that cell, else its only budget."""
    mine = [b for p, b in pairs if p == policy]
    return budget if budget in mine else mine[0]


def cell_name(cell: dict) -> str:
    budget = "fixed" if math.isnan(cell["budget"]) else f"{cell['budget']:g}"
    return (f"{cell['task']}-{cell['policy']}-{budget}-s{cell['seed']}-lr{cell['lr']:g}-d{cell['d_model']}x"
            f"{cell['n_layers']}-{cell['steps']}x{cell['batch_size']}-n{cell['n_test']}v{cell['n_val']}"
            f"m{cell['synthetic_series']}")


def sweep_cells(preset: dict) -> list[dict]:
    """Phase 1: every (task, policy) at every learning rate, at its sweep budget, with the sweep seed: a seed of
    its own, so no reported cell is the very model its learning rate was picked on."""
    recipe = {k: preset[k] for k in (*RECIPE, "synthetic_series")}
    out = []
    for task in preset["tasks"]:
        pairs = task_pairs(task, preset["policies"], preset["budgets"])
        for policy in dict.fromkeys(p for p, _ in pairs):
            budget = sweep_budget_of(pairs, policy, preset["sweep_budget"])
            out += [{"task": task, "policy": policy, "budget": budget, "seed": preset["sweep_seed"], "lr": lr,
                     **recipe} for lr in preset["lrs"]]
    return out


def main_cells(preset: dict, best_lr: dict) -> list[dict]:
    """Phase 2: every (task, policy, budget, seed) whose learning rate ``best_lr`` holds, at that rate, in the #6
    sweep's run order (:func:`priority`: controls and the 10% cells with every seed first, then the budgets nearest
    10%), so a slice cut short by its time limit has every seed of every policy at the budgets it reached."""
    from tsham.experiments.probe_sweep import priority

    recipe = {k: preset[k] for k in (*RECIPE, "synthetic_series")}
    return sorted([{"task": task, "policy": p, "budget": b, "seed": s, "lr": best_lr[task, p], **recipe}
                   for task in preset["tasks"] for p, b in task_pairs(task, preset["policies"], preset["budgets"])
                   if (task, p) in best_lr for s in preset["seeds"]], key=priority)


def select_lrs(logs: list[dict], higher_is_better: dict[str, bool]) -> dict[tuple[str, str], float]:
    """The learning rate with the best validation score per (task, policy), from the phase-1 cells' logs; a NaN
    score (a diverged run) is the worst, so it is chosen only when every rate diverged."""
    best: dict = {}
    for log in logs:
        key, sign = (log["task"], log["policy"]), 1.0 if higher_is_better[log["task"]] else -1.0
        score = sign * log["val"] if math.isfinite(log["val"]) else -math.inf
        if key not in best or score > best[key][1]:
            best[key] = (log["lr"], score)
    return {k: v[0] for k, v in best.items()}


def run(args) -> None:
    """Phase 1 (learning-rate sweep) and phase 2 in one pool of worker processes: a (task, policy)'s phase-2 cells
    join the queue as soon as its last sweep cell is done (:func:`unlock`), so no worker idles while other sweeps
    run. The queue runs the tasks in the order given, each sweep first. Cells already written are skipped, so a
    stopped benchmark resumes."""
    from tsham.experiments.common import header, past_durations, run_pool
    from tsham.experiments.probe_sweep import priority

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if str(args.device).startswith("cuda") and not _cuda():
        raise ValueError(f"--device {args.device}: this machine has no CUDA device; use --device cpu")
    preset = PRESETS[args.preset]
    if args.tasks:  # a slice of the preset (tasks are independent), e.g. one session's share of a long benchmark
        unknown = sorted(set(args.tasks) - set(preset["tasks"]))
        if unknown:
            raise ValueError(f"--tasks {unknown} are not in preset {args.preset!r}: {preset['tasks']}"
                             + (" (GIFT is scored on the synthetic task's models)" if "gift" in unknown else ""))
        preset = {**preset, "tasks": list(args.tasks)}
    out = Path(args.out)
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({**header(), "preset": args.preset, **preset}, indent=1, default=str))
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else math.inf
    sweeps: dict[tuple[str, str], list[dict]] = {}
    for cell in sweep_cells(preset):
        sweeps.setdefault((cell["task"], cell["policy"]), []).append(cell)
    todo = Releases(preset, sweeps, out)
    queue = [c for cells in sweeps.values() for c in cells if not _done(folder, c)]
    queue += [c for key in sweeps for c in todo(key)]

    def follow_up(cell: dict) -> list[dict]:
        return todo((cell["task"], cell["policy"])) if cell["seed"] == preset["sweep_seed"] else []

    def order(cell: dict) -> tuple:
        return preset["tasks"].index(cell["task"]), cell["seed"] != preset["sweep_seed"], priority(cell)

    queue.sort(key=order)
    print(f"the main cells of each policy join the queue once its learning-rate sweep ends (cells now: "
          f"{len(queue)})", flush=True)  # so "N cells to run" below is not read as the whole run
    run_pool(queue, partial(run_cell, out=args.out, device=args.device, cuda_graph=args.cuda_graph), cell_name,
             args.workers, deadline,
             args.device, past_durations(folder, "task"), follow_up=follow_up, order=order,
             kind=lambda cell: cell["task"])
    waiting = [f"{t}/{p}" for (t, p), cells in sweeps.items() if not all(_done(folder, c) for c in cells)]
    if waiting:  # every rate must have run: a choice among the survivors would not be the sweep's
        print(f"{len(waiting)} learning-rate sweeps are incomplete ({', '.join(waiting[:5])}"
              f"{', ...' if len(waiting) > 5 else ''}); their policies' cells wait: run again to resume (a cell that "
              "FAILED above fails again until its cause, the message, is fixed)", flush=True)
    elif not any(unlock(key, preset, sweeps, out) for key in sweeps):  # every cell of the slice is done
        measure_throughput(preset, out, args.device)


def _done(folder: Path, cell: dict) -> bool:
    return (folder / f"{cell_name(cell)}.json").is_file()


class Releases:
    """``releases(key)``: a (task, policy)'s phase-2 cells (:func:`unlock`), released once. Two of its sweep cells
    finishing together both find the sweep complete (workers write their files before the pool hears of them), and
    would otherwise queue every cell twice."""

    def __init__(self, preset: dict, sweeps: dict, out: Path):
        self.preset, self.sweeps, self.out, self.released = preset, sweeps, out, set()

    def __call__(self, key: tuple[str, str]) -> list[dict]:
        if key in self.released:
            return []
        cells = unlock(key, self.preset, self.sweeps, self.out)
        if all(_done(self.out / "cells", c) for c in self.sweeps[key]):
            self.released.add(key)
        return cells


def unlock(key: tuple[str, str], preset: dict, sweeps: dict, out: Path) -> list[dict]:
    """The phase-2 cells not yet run of a (task, policy) whose learning-rate sweep is complete, at the rate it
    chose (recorded in ``out/learning_rates.json``, which slices of one benchmark share); [] while a rate is
    missing."""
    folder = out / "cells"
    if not all(_done(folder, c) for c in sweeps[key]):
        return []
    logs = [json.loads((folder / f"{cell_name(c)}.json").read_text()) for c in sweeps[key]]
    best = select_lrs(logs, {key[0]: task_spec(key[0])["kind"] == "probe"})
    chosen = out / "learning_rates.json"
    earlier = {(t, p): lr for t, p, lr in json.loads(chosen.read_text())} if chosen.is_file() else {}
    if earlier.get(key) != best[key]:  # only the pool's parent process writes it, one cell at a time
        chosen.with_suffix(".tmp").write_text(json.dumps([[t, p, lr] for (t, p), lr in {**earlier, **best}.items()]))
        os.replace(chosen.with_suffix(".tmp"), chosen)
    return [c for c in main_cells(preset, best) if not _done(folder, c)]


def measure_throughput(preset: dict, out: Path, device: str) -> None:
    """Router overhead per policy, timed alone (:func:`isolated_throughput`) on each of the run's tasks that has
    none yet; rows go to ``out/throughput.json``, which the report prefers to the cells' shared-device numbers."""
    from tsham.experiments.routing_tasks import isolated_throughput

    path = out / "throughput.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    recipe = {k: preset[k] for k in (*RECIPE, "synthetic_series")}
    for task in preset["tasks"]:
        if not any(r["task"] == task for r in rows):
            rows += isolated_throughput(task, preset["policies"], preset["sweep_budget"], recipe, device)
    path.write_text(json.dumps(rows, indent=1))


def run_cell(cell: dict, out: str, device: str, cuda_graph: bool = False) -> str:
    """Trains and scores one cell (in a worker process); writes ``cells/<name>.json``; returns its name.
    ``cuda_graph``: replay each training step as a CUDA graph (on CUDA; the same computation, less host time);
    the log records whether it did and any warning the training raised (a capture that failed, for one)."""
    import torch
    from tsham.experiments.common import warnings_seen
    from tsham.experiments.routing_tasks import evaluate_cell, steady_throughput, train_cell

    torch.set_num_threads(1)  # many workers share the machine's cores
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    with warnings_seen() as seen:
        model, history, tokens_per_step = train_cell(cell, device, cuda_graph)
    trained = time.monotonic()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None  # training only
    # workers share the device: compare policies by the mean over many cells (or throughput.json), not cell by cell
    throughput = steady_throughput(history, tokens_per_step)
    result = evaluate_cell(model, cell, device)
    routers = sum(p.numel() for n, p in model.named_parameters() if ".router." in n)
    total = sum(p.numel() for p in model.parameters())
    log = {**cell, **result, "parameters": total, "router_parameters": routers, "router_share": routers / total,
           "train_seconds": trained - started, "eval_seconds": time.monotonic() - trained,
           "train_tokens_per_s": throughput, "peak_memory_mib": peak,
           "cuda_graph": cuda_graph and device.startswith("cuda"),
           "warnings": seen, "loss": history}
    name = cell_name(cell)
    path = Path(out) / "cells" / f"{name}.json"
    path.with_suffix(".tmp").write_text(json.dumps(log, default=float))
    os.replace(path.with_suffix(".tmp"), path)  # a stopped run leaves no partial cell
    return name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    add_run_args(r)
    t = sub.add_parser("throughput", help="time each policy's training step alone on the run's tasks that have no "
                       "timing yet (run does this once every cell is done)")
    t.add_argument("run")
    t.add_argument("--device", default="cuda")
    p = sub.add_parser("report")
    p.add_argument("run")
    p.add_argument("--name", default="routing_policies")
    p.add_argument("--results", help="folder of the report and its PNGs (default: experiments/results)")
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args)
    elif args.what == "throughput":
        preset = PRESETS[json.loads((Path(args.run) / "bench.json").read_text())["preset"]]
        tasks = {json.loads(f.read_text())["task"] for f in (Path(args.run) / "cells").glob("*.json")}  # every slice's
        measure_throughput({**preset, "tasks": [t for t in preset["tasks"] if t in tasks]}, Path(args.run), args.device)
    else:
        from tsham.experiments.routing_report import report

        report(Path(args.run), args.name, Path(args.results) if args.results else None)


def add_bench_parser(sub) -> None:
    """``tsham bench``: run a preset (default: the CPU quick mode) and write its report into the run folder."""
    bench = sub.add_parser("bench", help="compare routing policies side by side (default: the CPU quick mode)")
    add_run_args(bench, preset="quick", device="cuda" if _cuda() else "cpu")
    bench.set_defaults(func=bench_command)


def bench_command(args) -> int:
    """Runs ``args.preset`` into ``args.out`` and writes ``args.out/report/bench_<preset>.md`` with its plots."""
    run(args)
    from tsham.experiments.routing_report import report

    path = report(Path(args.out), f"bench_{args.preset}", Path(args.out) / "report")
    print(f"report written to {path}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def add_run_args(parser: argparse.ArgumentParser, preset: str = "full", device: str = "cuda") -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default=preset)
    parser.add_argument("--workers", type=int, default=2, help="cells trained at once, one process each")
    parser.add_argument("--device", default=device)
    parser.add_argument("--minutes", type=float, help="start no cell that would end after this many minutes (by "
                        "the median duration of the cells done so far)")
    parser.add_argument("--cuda-graph", action="store_true", help="replay each training step as a CUDA graph (the "
                        "same computation with less host time: many small-model workers per GPU run out of CPU)")
    parser.add_argument("--tasks", nargs="+", help="run only these tasks of the preset (the cells add up in --out)")
    parser.add_argument("--out", required=True, help="run folder (cells/ holds one JSON per cell)")


if __name__ == "__main__":
    main()
