"""`tsham bench`: the routing-policy benchmark's CPU quick mode, end to end, as a user runs it."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest


def test_quick_bench_runs_reports_and_resumes(tmp_path):
    out = tmp_path / "bench"
    args = [sys.executable, "-m", "tsham.cli", "bench", "--out", str(out), "--workers", "2", "--device", "cpu"]
    # run where a user would, outside the checkout (whose tsham/ folder would shadow the installed package)
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FAILED" not in done.stdout, done.stdout[-3000:]
    report = out / "report"
    assert (report / "bench_quick.md").is_file()
    for png in ("frontier_mqar@easy", "frontier_synthetic@quick", "layers", "routing_map_synthetic@quick"):
        assert (report / f"bench_quick_{png}.png").stat().st_size > 5_000, png

    rows = pd.DataFrame(json.loads((report / "bench_quick.json").read_text())["rows"])
    synthetic = rows[rows["task"] == "synthetic@quick"].set_index(["policy", "budget_label"])
    # every policy of the forecasting task (no oracle: no needles), every budget, both seeds
    assert set(synthetic.index.get_level_values(0)) == {"surprise", "uncertainty", "event", "learned", "composite",
                                                        "random", "recency", "all", "none"}
    assert (synthetic["seeds"] == 2).all()
    assert synthetic.loc[("none", "0"), "kv_realised"] == 0 and synthetic.loc[("all", "1"), "kv_realised"] == 1
    for policy in ("random", "surprise"):  # realised, not nominal; the controllers land near their targets
        assert synthetic.loc[(policy, "0.1"), "kv_realised"] == pytest.approx(0.1, abs=0.06)
    assert (rows["router_share"] < 0.01).all()  # routers stay under 1% of the parameters
    probe = rows[rows["task"] == "mqar@easy"]
    assert {"oracle", "event"} <= set(probe["policy"])  # MQAR's kv-marker is a known event flag

    timed = pd.DataFrame(json.loads((out / "throughput.json").read_text()))  # each policy timed alone
    assert set(timed["task"]) == {"mqar@easy", "synthetic@quick"} and (timed["tokens_per_s"] > 0).all()
    assert "each policy timed alone" in (report / "bench_quick.md").read_text()

    lrs = json.loads((out / "learning_rates.json").read_text())
    assert len(lrs) == len(rows.groupby(["task", "policy"])) and {lr for *_, lr in lrs} <= {3e-3, 1e-2}
    cells = len(list((out / "cells").glob("*.json")))
    again = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path)  # resumes: no new cell
    assert again.returncode == 0 and "0 cells to run" in again.stdout
    assert len(list((out / "cells").glob("*.json"))) == cells

    (out / "throughput.json").unlink()  # the timing alone, as on a slice of the full preset
    timing = [sys.executable, "-m", "tsham.experiments.routing_policies", "throughput", str(out), "--device", "cpu"]
    assert subprocess.run(timing, capture_output=True, text=True, timeout=600, cwd=tmp_path).returncode == 0
    again = pd.DataFrame(json.loads((out / "throughput.json").read_text()))
    def pairs(frame):
        return sorted(map(tuple, frame[["task", "policy"]].to_numpy()))

    assert pairs(again) == pairs(timed)


def test_main_cells_run_controls_and_ten_percent_first():
    from tsham.experiments.routing_policies import PRESETS, main_cells, task_pairs

    preset = {**PRESETS["full"], "tasks": ["synthetic", "delayed_action"]}
    best = {(t, p): 1e-3 for t in preset["tasks"] for p, _ in task_pairs(t, preset["policies"], preset["budgets"])}
    cells = main_cells(preset, best)
    first = [c for c in cells if not 0 < c["budget"] < 1 or c["budget"] == 0.1]  # controls, fixed and 10%
    assert cells[:len(first)] == first and len(first) < len(cells)  # a slice cut short has these first...
    assert {c["seed"] for c in first} == set(preset["seeds"])  # ...with every seed
    assert [c["budget"] for c in cells[len(first):]][:1] in ([0.05], [0.25])  # then the nearest budgets


def test_a_finished_sweep_unlocks_only_its_own_policy(tmp_path):
    from tsham.experiments.routing_policies import PRESETS, Releases, cell_name, sweep_cells, unlock

    preset = {**PRESETS["full"], "tasks": ["ltsf_etth1"]}
    sweeps = {}
    for c in sweep_cells(preset):
        sweeps.setdefault((c["task"], c["policy"]), []).append(c)
    (tmp_path / "cells").mkdir()
    key = ("ltsf_etth1", "random")
    for c, val in zip(sweeps[key], (0.7, 0.5, 0.6, math.nan), strict=True):  # 3e-3 has the lowest loss
        (tmp_path / "cells" / f"{cell_name(c)}.json").write_text(json.dumps({**c, "val": val}))
    assert unlock(("ltsf_etth1", "surprise"), preset, sweeps, tmp_path) == []  # its sweep has not run
    cells = unlock(key, preset, sweeps, tmp_path)
    assert {(c["policy"], c["lr"]) for c in cells} == {("random", 3e-3)}
    assert len(cells) == len(preset["budgets"]) * len(preset["seeds"])
    assert json.loads((tmp_path / "learning_rates.json").read_text()) == [["ltsf_etth1", "random", 3e-3]]
    (tmp_path / "cells" / f"{cell_name(cells[0])}.json").write_text("{}")  # a finished cell is not run again
    assert len(unlock(key, preset, sweeps, tmp_path)) == len(cells) - 1

    releases = Releases(preset, sweeps, tmp_path)  # two sweep cells finishing together release the cells once
    assert releases(("ltsf_etth1", "surprise")) == []
    assert len(releases(key)) == len(cells) - 1 and releases(key) == []


def test_bench_refuses_a_device_it_does_not_have_and_no_workers(tmp_path, capsys):
    import torch

    from tsham.cli import main

    assert main(["bench", "--out", str(tmp_path / "w"), "--workers", "0", "--device", "cpu"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "--out", str(tmp_path / "c"), "--device", "cuda"]) == 2
        assert "no CUDA device; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # refused before anything was written
