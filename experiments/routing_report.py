"""The routing benchmark's report: results table (mean +- std over seeds at realised budgets), a Pareto frontier
per task, per-layer KV fractions, routing maps on a real series, and throughput / memory per policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tsham.experiments.common import RESULTS, header, write_results


def load_cells(run: Path) -> pd.DataFrame:
    """Every finished cell of a run, marked ``selected`` where it trained at its policy's chosen learning rate
    (``learning_rates.json``; the other sweep cells only served the choice)."""
    logs = [json.loads(f.read_text()) for f in sorted((run / "cells").glob("*.json"))]
    if not logs:
        raise SystemExit(f"no finished cells under {run / 'cells'}")
    # GIFT's series have no flags: event would keep nothing (pure GDN trained otherwise), composite only its surprise
    logs += [gift_row(log) for log in logs if log.get("gift") and log["policy"] not in ("event", "composite")]
    cells = pd.DataFrame(logs)
    chosen_path = run / "learning_rates.json"
    chosen = {(t, p): lr for t, p, lr in json.loads(chosen_path.read_text())} if chosen_path.is_file() else {}
    chosen |= {("gift", p): lr for (t, p), lr in chosen.items() if t == "synthetic"}  # the same models
    cells["selected"] = [chosen.get((t, p)) == lr for t, p, lr in zip(cells["task"], cells["policy"], cells["lr"],
                                                                      strict=True)]
    cells["budget_label"] = ["fixed" if math.isnan(b) else f"{b:g}" for b in cells["budget"]]
    bench = json.loads((run / "bench.json").read_text()) if (run / "bench.json").is_file() else {}
    cells.attrs["bench"] = bench  # the run's preset and header, for the report
    cells.attrs["sweep_seeds"] = [bench["sweep_seed"]] if "sweep_seed" in bench else []
    if not cells["selected"].any():
        raise SystemExit(f"no cell under {run} trained at a chosen learning rate yet: the learning-rate sweep "
                         "(phase 1) has not finished; run the benchmark again to resume it")
    return cells


def gift_row(log: dict) -> dict:
    """A synthetic-task cell's zero-shot GIFT scores (``log["gift"]``) as a cell of the task "gift": the same
    model, learning rate and validation score; the GIFT metric, CRPS ratio and KV fraction realised on its contexts
    and per layer (the routing map stays with the synthetic row)."""
    gift = log["gift"]
    return {**log, "task": "gift", "test": gift["test"], "metric": gift["metric"], "CRPS_ratio": gift["CRPS_ratio"],
            "kv_realised": gift["kv_realised"], "kv_per_layer": gift.get("kv_per_layer"), "routing_map": None,
            "gift": None}


def cell_counts(cells: pd.DataFrame) -> str:
    """How many models the run trained, how many of them the tables report (the chosen learning rate, the reported
    seeds) and how many GIFT rows those models gave."""
    gift = cells["task"] == "gift"
    reported = cells["selected"] & cells["seed"].isin(reported_seeds(cells))
    return (f"{int((~gift).sum())} trained, {int((reported & ~gift).sum())} of them reported (the rest served the "
            f"learning-rate sweep), plus {int((reported & gift).sum())} GIFT rows scored on the synthetic models")


def training_modes(cells: pd.DataFrame) -> str:
    """How the trained cells ran, per task: eager steps or a replayed CUDA graph (``cuda_graph`` in a cell's log;
    absent before it existed: eager). A task whose cells mixed the two (or machines) has shared-device throughput
    that compares its policies only roughly."""
    trained = cells[cells["task"] != "gift"]
    graphed = trained["cuda_graph"].eq(True) if "cuda_graph" in trained else trained["task"] == ""
    parts = []
    for task, flags in graphed.groupby(trained["task"], sort=False):
        n = int(flags.sum())
        mode = "all eager" if n == 0 else "all graphed" if n == len(flags) else f"{n} of {len(flags)} graphed"
        parts.append(f"{task} {mode}")
    return "; ".join(parts)


def reported_seeds(cells: pd.DataFrame) -> set:
    """The seeds of the reported cells: all but the learning-rate sweep's own seed (when the run says it)."""
    return set(cells["seed"]) - set(cells.attrs.get("sweep_seeds", ()))


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (task, policy, nominal budget): the test metric's mean and std over the seeds whose score is finite
    (``seeds``; ``failed_seeds`` counts diverged ones, std NaN under two seeds), the realised KV fraction, the
    learning rate, throughput, peak memory and the router's share of the parameters. Pareto-optimal: no other
    cell of the task keeps no more KV and scores at least as well; cells without a finite score are never on it."""
    main = cells[cells["selected"] & cells["seed"].isin(reported_seeds(cells))].copy()
    main["finite"] = np.isfinite(main["test"].astype(float))
    keys = ["task", "policy", "budget_label"]
    groups = main.groupby(keys, sort=False)
    table = groups.agg(metric=("metric", "first"), higher_is_better=("higher_is_better", "first"),
                       test=("test", "mean"), test_std=("test", "std"), seeds=("finite", "sum"),
                       failed_seeds=("finite", lambda f: int((~f).sum())),
                       kv_realised=("kv_realised", "mean"), lr=("lr", "first"),
                       tokens_per_s=("train_tokens_per_s", "mean"), peak_memory_mib=("peak_memory_mib", "mean"),
                       router_share=("router_share", "max"),
                       **({"crps_ratio": ("CRPS_ratio", "mean")} if "CRPS_ratio" in main else {})).reset_index()
    table["pareto"] = False
    for _, group in table[np.isfinite(table["test"])].groupby("task"):
        score = group["test"] * (1.0 if group["higher_is_better"].iloc[0] else -1.0)  # higher is better now
        for i in group.index:  # on the frontier: no other cell keeps no more KV and scores at least as well
            kv, others = group.loc[i, "kv_realised"], group.index != i
            no_more, at_least = group["kv_realised"] <= kv, score >= score[i]
            strictly = (group["kv_realised"] < kv) | (score > score[i])
            table.loc[i, "pareto"] = not (others & no_more & at_least & strictly).any()
    return table


def results_table(table: pd.DataFrame) -> str:
    lines = []
    for task, group in table.groupby("task", sort=False):
        metric = group["metric"].iloc[0] + (" (higher is better)" if group["higher_is_better"].iloc[0] else
                                            " (lower is better)")
        lines += [f"### {task}: {metric}", "", "| policy | nominal budget | realised KV | test, mean +- std (seeds) | "
                  "lr | on the Pareto frontier |", "|---|---|---|---|---|---|"]
        for _, r in group.sort_values(["policy", "kv_realised"]).iterrows():
            std = "n/a" if pd.isna(r["test_std"]) else f"{r['test_std']:.4f}"
            failed = f", {r['failed_seeds']} diverged" if r["failed_seeds"] else ""
            crps = f"; CRPS ratio {r['crps_ratio']:.4f}" if pd.notna(r.get("crps_ratio", np.nan)) else ""
            lines.append(f"| {r['policy']} | {r['budget_label']} | {r['kv_realised']:.3f} | {r['test']:.4f} +- "
                         f"{std} ({r['seeds']}{failed}{crps}) | {r['lr']:g} | {'yes' if r['pareto'] else ''} |")
        lines.append("")
    return "\n".join(lines)


OVER_BUDGET = 1.5  # a policy realising more than this times its nominal budget is not ranked at that budget


def winners(table: pd.DataFrame) -> str:
    """Per task and nominal budget, the best policy (the written summary starts from these lines). Policies at one
    nominal budget can realise different budgets (a learned or uncertainty router drifts from its target; a
    recency window keeps its sinks too), so each is shown with its realised KV, and one that realised more than
    :data:`OVER_BUDGET` times the nominal budget is listed apart instead of ranked: it bought its score with
    memory the others did not have. The frontier plots compare all of them at equal realised KV."""
    lines = [f"| task | nominal budget | best policy (realised KV) | its test score | runner-up (realised KV, score) "
             f"| over {OVER_BUDGET:g}x the budget, not ranked (realised KV, score) |", "|---|---|---|---|---|---|"]
    for (task, budget), group in table[~table["policy"].isin(["none", "all", "oracle"])].groupby(
            ["task", "budget_label"], sort=False):
        nominal = pd.to_numeric(budget, errors="coerce")  # "fixed" (event): NaN, which no realised KV exceeds
        over = group["kv_realised"] > OVER_BUDGET * nominal
        ranked = group[~over].sort_values("test", ascending=not group["higher_is_better"].iloc[0])
        cell = lambda r: f"{r['policy']} ({r['kv_realised']:.3f}, {r['test']:.4f})"  # noqa: E731
        best = (f"{ranked.iloc[0]['policy']} ({ranked.iloc[0]['kv_realised']:.3f}) | {ranked.iloc[0]['test']:.4f}"
                if len(ranked) else "none within budget | ")
        second = cell(ranked.iloc[1]) if len(ranked) > 1 else ""
        apart = ", ".join(cell(r) for _, r in group[over].iterrows())
        lines.append(f"| {task} | {budget} | {best} | {second} | {apart} |")
    return "\n".join(lines)


def throughput_table(table: pd.DataFrame, isolated: list[dict] | None = None) -> str:
    """Per policy: training throughput on each task (patch tokens/s, and relative to pure GDN on the same task,
    the router's overhead), peak GPU memory and the router's share of the parameters. A task's numbers come from
    ``isolated`` (rows of ``throughput.json``: each policy timed alone) where it has them; else from the cells'
    own, measured while other workers shared the device (means over many cells), as its column says."""
    trained = table[table["task"] != "gift"]  # GIFT rows are the synthetic models: no training of their own
    per = trained.groupby(["task", "policy"], sort=False).agg(
        tokens_per_s=("tokens_per_s", "mean"), peak=("peak_memory_mib", "max"), share=("router_share", "max"))
    per = per.reset_index().assign(alone=False)
    if isolated:
        alone = pd.DataFrame(isolated).rename(columns={"peak_memory_mib": "peak", "router_share": "share"})
        per = pd.concat([alone.assign(alone=True), per[~per["task"].isin(set(alone["task"]))]], ignore_index=True)
    none = per[per["policy"] == "none"].set_index("task")["tokens_per_s"]
    per["vs_none"] = per["tokens_per_s"] / per["task"].map(none)
    tasks = dict(per.groupby("task", sort=False)["alone"].first())
    lines = ["| policy | " + " | ".join(f"{t}: tokens/s (vs none), {'alone' if a else 'shared device'}"
                                       for t, a in tasks.items())
             + " | mean vs none | peak GPU memory (MiB) | router parameters |", "|---" * (len(tasks) + 4) + "|"]
    for policy, g in sorted(per.groupby("policy"), key=lambda kv: -kv[1]["vs_none"].mean()):
        cells = {r["task"]: f"{r['tokens_per_s']:,.0f} ({r['vs_none']:.2f}x)" for _, r in g.iterrows()}
        peak = "" if g["peak"].isna().all() else f"{g['peak'].max():.0f}"
        lines.append(f"| {policy} | " + " | ".join(cells.get(t, "") for t in tasks)
                     + f" | {g['vs_none'].mean():.2f}x | {peak} | {100 * g['share'].max():.2f}% |")
    return "\n".join(lines)


def timing_spread(isolated: list[dict] | None) -> str:
    """A sentence under the throughput table on how far one policy's timing rounds (``throughput.json``'s
    ``rounds``) lie apart, so a reader can tell a router's overhead from noise; "" without rounds."""
    spreads = [1 - min(r["rounds"]) / max(r["rounds"]) for r in isolated or () if len(r.get("rounds", ())) > 1]
    if not spreads:
        return ""
    return (f"\n\nTimed alone: each policy's best of {len(isolated[0]['rounds'])} rounds (eager steps on one fixed "
            f"batch; launch-bound at these sizes). One policy's rounds lie a median {100 * np.median(spreads):.0f}% "
            f"apart (up to {100 * max(spreads):.0f}%), so ratios within about that of 1.00x are noise.")


def policy_color(policy: str) -> str:
    """One colour per policy in every plot of a report (matplotlib's ten-colour cycle, in POLICIES order)."""
    from tsham.experiments.routing_policies import POLICIES

    return f"C{POLICIES.index(policy) % 10}" if policy in POLICIES else "0.5"


def plot_frontiers(table: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """One PNG per task: the test metric against the realised KV fraction, a line per policy, error bars over
    seeds, Pareto-optimal cells ringed."""
    import matplotlib.pyplot as plt

    paths = []
    for task, group in table.groupby("task", sort=False):
        fig, ax = plt.subplots(figsize=(7.5, 4))
        for policy, g in group.groupby("policy"):
            g = g.sort_values("kv_realised")
            ax.errorbar(g["kv_realised"], g["test"], yerr=g["test_std"].fillna(0.0), marker="o", ms=4, capsize=2,
                        label=policy, color=policy_color(policy))
        front = group[group["pareto"]]
        ax.scatter(front["kv_realised"], front["test"], s=120, facecolors="none", edgecolors="k", lw=1,
                   label="Pareto frontier")
        ax.set_xscale("symlog", linthresh=1e-2)
        ax.set(xlabel="realised KV fraction", ylabel=group["metric"].iloc[0], title=task)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
        fig.tight_layout()
        paths.append(folder / f"{name}_frontier_{task}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_layers(cells: pd.DataFrame, folder: Path, name: str, budget: str) -> list[Path]:
    """Realised KV fraction per layer, per policy at ``budget`` (and the fixed-budget policies), one panel per
    task (first seed)."""
    import matplotlib.pyplot as plt

    main = cells[cells["selected"] & cells["budget_label"].isin([budget, "fixed", "0", "1"])
                 & cells["kv_per_layer"].notna()]  # cells that recorded per-layer fractions
    main = main[main["seed"] == main["seed"].min()]
    tasks = list(dict.fromkeys(main["task"]))
    if not tasks:
        return []
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = main[main["task"] == task].sort_values("policy")
        n_layers = max(len(k) for k in rows["kv_per_layer"])
        width = 0.8 / n_layers
        for layer in range(n_layers):
            ax.bar(np.arange(len(rows)) + layer * width, [k[layer] for k in rows["kv_per_layer"]], width,
                   label=f"layer {layer}")
        ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, rows["policy"], rotation=45, ha="right", fontsize=8)
        ax.set(title=f"{task} (budget {budget})", ylabel="realised KV fraction")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = folder / f"{name}_layers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_routing_maps(cells: pd.DataFrame, folder: Path, name: str, budget: str) -> list[Path]:
    """Per forecasting task: the real series and, one row per policy, the context steps whose patch any layer
    routed (first seed, ``budget`` or the policy's fixed budget)."""
    import matplotlib.pyplot as plt

    paths = []
    have = cells[cells["selected"] & cells["routing_map"].notna() & cells["budget_label"].isin([budget, "fixed"])]
    for task, group in have.groupby("task", sort=False):
        group = group[group["seed"] == group["seed"].min()].sort_values("policy")
        first = group["routing_map"].iloc[0]
        values, patch = np.asarray(first["values"], dtype=float), first["patch_length"]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 1.5 + 0.35 * len(group)), sharex=True,
                                          gridspec_kw={"height_ratios": [2, max(1, len(group) // 3)]})
        top.plot(values, lw=0.8, color="k")
        top.set(title=f"{task}: steps kept on {first['series']} (budget {budget})")
        for row, (_, cell) in enumerate(group.iterrows()):
            kept = sorted({t for layer in cell["routing_map"]["kept"] for t in layer})
            bottom.broken_barh([(t * patch, patch) for t in kept], (row - 0.4, 0.8))
        bottom.set_yticks(range(len(group)), group["policy"], fontsize=8)
        bottom.set_xlabel("context step")
        fig.tight_layout()
        paths.append(folder / f"{name}_routing_map_{task}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def report(run: Path, name: str, results: Path | None = None) -> Path:
    """Writes ``<results>/<name>.md`` / ``.json`` and the PNGs beside them; returns the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    made = header()  # before the PNGs are rewritten, which would mark the revision dirty
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    cells = load_cells(run)
    table = summarise(cells)
    bench = cells.attrs["bench"]
    budget = f"{bench.get('sweep_budget', 0.1):g}"
    isolated = json.loads((run / "throughput.json").read_text()) if (run / "throughput.json").is_file() else None
    pngs = [*plot_frontiers(table, results, name), *plot_layers(cells, results, name, budget),
            *plot_routing_maps(cells, results, name, budget)]
    text = "\n\n".join(["## Best policy per task and budget (controls left out)", winners(table),
                        "## Results", results_table(table),
                        "## Throughput, memory and router size" + (" (each policy timed alone where a column says "
                                                                   "so)" if isolated else " (cells sharing the device: "
                                                                   "means)"),
                        throughput_table(table, isolated) + timing_spread(isolated)])
    meta = {**made, "run": f"{run} ({bench.get('machine', '?')}, {bench.get('date', '?')}, preset "
            f"{bench.get('preset', '?')}, rev {bench.get('revision', '?')})",
            "cells": cell_counts(cells), "training steps (CUDA graphs or eager)": training_modes(cells),
            "plots": ", ".join(p.name for p in pngs)}
    return write_results(name, meta, table.to_dict("records"), text, results)
