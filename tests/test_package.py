"""The installed package: namespace mapping, console script, demo."""

import subprocess
import sys
import tempfile

import pytest


def test_top_level_folders_map_into_the_tsham_namespace():
    import tsham.datasets
    import tsham.experiments
    import tsham.probes

    for mod, folder in ((tsham.datasets, "datasets"), (tsham.probes, "probes"), (tsham.experiments, "experiments")):
        assert mod.__file__.replace("\\", "/").endswith(f"{folder}/__init__.py")


def run_cli(*args, cwd=None, module="tsham.cli"):
    """``python -m tsham.cli`` outside the repo: run from the repo root, ``-m`` would import the source-tree
    ``tsham/`` (which lacks the mapped datasets/probes/experiments) instead of the installed package."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd or tempfile.gettempdir())


@pytest.mark.parametrize("module", ["tsham.cli", "tsham"])
def test_cli_info(module):
    out = run_cli("info", module=module)
    assert out.returncode == 0, out.stderr
    assert "torch" in out.stdout and "gated_delta" in out.stdout and "scratchpad" in out.stdout


def test_cli_unknown_subcommand_fails_cleanly():
    out = run_cli("teleport")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_demo_table_is_sane():
    from tsham.demo import DEMO_ROUTERS, run_demo

    reports = {r.router: r for r in run_demo(batch=2, length=96, warmup=15, progress=False)}
    assert set(reports) == set(DEMO_ROUTERS)
    assert reports["all"].kv_fraction == 1.0 and reports["none"].kv_fraction == 0.0
    assert reports["event"].shift_capture == 1.0  # flags are the shifts themselves
    assert reports["none"].slots_per_stream == 0.0
    window = DEMO_ROUTERS["recency"]
    assert reports["recency"].slots_per_stream == window["window"] + window["sinks"]  # held, not routed (all 96)
    for name in ("surprise", "random"):
        assert 0.02 < reports[name].kv_fraction < 0.25, (name, reports[name])


@pytest.mark.parametrize("args", [["demo", "--batch", "1", "--length", "32", "--warmup", "2"]])
def test_cli_demo_runs(args):
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    assert "surprise" in out.stdout and "KV fraction" in out.stdout


def test_default_model_is_shipped_and_forecasts(tmp_path):
    """The README's main job: the shipped model forecasts the bundled CO2 series, CSV and PNG written."""
    import json

    import pandas as pd

    from tsham.forecasting.pipeline import DEFAULT_MODEL

    card = json.loads((DEFAULT_MODEL / "card.json").read_text())
    assert card["data"]["evaluation_sets_used"] == [] and card["parameters"] > 0
    out = run_cli("forecast", "--input", "sm_co2", "--horizon", "104", "--output", "co2.csv", "--plot", "co2.png",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    forecast = pd.read_csv(tmp_path / "co2.csv")
    assert len(forecast) == 104 and forecast["predictions"].between(300, 450).all()  # CO2 in ppm
    assert (tmp_path / "co2.png").stat().st_size > 10_000
