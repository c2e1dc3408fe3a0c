import json

import pytest
import torch
from tsham.experiments import probe_transfer
from tsham.experiments.probe_sweep import PRESETS, cell_config, cell_name, cells
from tsham.probes import PROBES
from tsham.probes.resume import save_loop_state
from tsham.probes.runner import TRAIN_SEED_OFFSET, training_batch, training_loss

from tsham.model import TshamModel


def _cut_state(folder, preset="c_mid", policy="surprise"):
    """A loop state of a preset's cell as a cut cell leaves it, after one training forward (which calibrates a
    budgeted router's threshold: the state records it)."""
    cell = next(c for c in cells(PRESETS[preset]) if c["policy"] == policy)
    model = TshamModel(cell_config(cell)).train()
    training_loss(model, training_batch(model, PROBES[cell["probe"]](2, cell["level"], seed=1)))
    path = folder / f"{cell_name(cell)}.ckpt"
    save_loop_state(path, model, torch.optim.AdamW(model.parameters()), 1, cell["steps"], [], 0.0)
    return path, model


def test_transfer_loads_a_cut_cell_with_its_calibrated_routers(tmp_path):
    path, model = _cut_state(tmp_path)
    loaded, cell, step = probe_transfer.load_cell_model(path, "medium:events=4,lag=0")
    assert cell["policy"] == "surprise" and step == 1 and not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    calibrated = [name for name, m in model.named_modules() if getattr(m, "calibrated", False)]
    assert calibrated and all(dict(loaded.named_modules())[name].calibrated for name in calibrated)


def test_transfer_scores_every_state_at_every_level(tmp_path, monkeypatch):
    path, _ = _cut_state(tmp_path, "tiny", "random")
    seen = []
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: seen.append(rows))
    probe_transfer.main([str(path), "--levels", "easy", "medium", "--n", "4", "--name", "x"])
    rows = seen[0]
    assert [r["level"] for r in rows] == ["easy", "medium"] and all(0 <= r["kv_fraction"] <= 1 for r in rows)
    assert {r["trained_at"] for r in rows} == {"easy"}
    json.dumps(rows)  # plain numbers: the results file takes them
    with pytest.raises(SystemExit):
        probe_transfer.main([str(path), "--levels", "easy", "--n", "0"])


def test_transfer_scores_on_the_device_it_is_given(tmp_path, monkeypatch):
    path, _ = _cut_state(tmp_path, "tiny", "random")
    devices, metas = [], []

    def spy(real):
        def call(*args, **kwargs):
            devices.append((real.__name__, args[-1]))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(probe_transfer, "calibrate_probe_budget", spy(probe_transfer.calibrate_probe_budget))
    monkeypatch.setattr(probe_transfer, "evaluate_probe", spy(probe_transfer.evaluate_probe))
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: metas.append(meta))
    probe_transfer.main([str(path), "--levels", "easy", "--n", "4", "--calibrate", "--device", "cpu", "--name", "x"])
    assert devices == [("calibrate_probe_budget", "cpu"), ("evaluate_probe", "cpu")]
    assert metas[0]["device"] == "cpu"


def test_transfer_says_which_stage_of_a_curriculum_a_state_was_trained_on():
    cell = cells(PRESETS["a8_curriculum"])[0]
    assert probe_transfer.trained_at(cell, 3000) == "easy:distractors=7"
    assert probe_transfer.trained_at(cell, 7000) == "easy:distractors=7, then medium:distractors=7"
    later = cells(PRESETS["c16_spaced"])[0]  # a stage that starts from another preset's finished cell
    assert probe_transfer.trained_at(later, 600) == "c16_curriculum's cell, then medium:events=16,lag=0,spacing=112"


def test_transfer_takes_a_presets_cell_at_a_seed_the_preset_does_not_list(tmp_path):
    cell = {**next(c for c in cells(PRESETS["a8_kv_curriculum"]) if c["policy"] == "surprise"), "seed": 7}
    found = probe_transfer.cell_of(tmp_path / f"{cell_name(cell)}.final.pt")
    assert found == cell and cell_name(found) == cell_name(cell)


def test_transfer_refuses_a_state_no_preset_names(tmp_path):
    path, _ = _cut_state(tmp_path, "tiny", "random")
    other = path.with_name("mqar-easy-p4-random-0.25-s9-unknown.ckpt")
    path.rename(other)
    with pytest.raises(ValueError, match="not the loop state of a cell of a known preset"):
        probe_transfer.load_cell_model(other, "easy")


def test_stage2_trains_a_cut_state_to_its_end_on_another_level(tmp_path, monkeypatch):
    from tsham.experiments import probe_stage2
    from tsham.probes.resume import read_loop_state

    path, model = _cut_state(tmp_path, "tiny", "random")  # the tiny cell: 2 steps, cut before its second
    drawn = []
    original = PROBES["mqar"]
    monkeypatch.setitem(PROBES, "mqar", lambda n, level, seed: drawn.append((level, seed)) or original(n, level, seed))
    probe_stage2.main([str(path), "--level", "medium"])
    state = read_loop_state(path)
    training = [level for level, seed in drawn if seed >= TRAIN_SEED_OFFSET]
    assert state["next_step"] == state["steps"] == 2 and training == ["medium"]  # step 1 only, on the new level
    assert any((state["model"][k] != v).any() for k, v in model.state_dict().items())  # it trained
    with pytest.raises(SystemExit):
        probe_stage2.main([str(tmp_path / "unknown.ckpt"), "--level", "medium"])
    with pytest.raises(SystemExit):  # a finished cell's weights have no optimizer state to train on with
        probe_stage2.main([str(path.with_name(path.name.removesuffix(".ckpt") + ".final.pt")), "--level", "medium"])


def test_calibrating_a_probe_model_routes_its_budget_of_other_sequences_than_the_test():
    """A trained threshold that routes nothing is set back to the budget, layer after layer, on sequences of the
    calibration seed (test seed + CALIBRATION_SEED_OFFSET)."""
    from tsham.probes.runner import (
        CALIBRATION_SEED_OFFSET,
        calibrate_probe_budget,
        probe_config,
        probe_context_length,
        probe_forward,
    )

    config = probe_config("surprise", 0.1, patch_length=4, d_model=16, n_layers=2,
                          context_length=probe_context_length("mqar", "easy"))
    model = TshamModel(config).eval()
    routers = [b.mixer.router for b in model.stack.blocks]
    for r in routers:
        r.tau.fill_(1e9)
    taus = calibrate_probe_budget(model, "mqar", "easy", 0.1, test_seed=10_003, n=4)
    assert taus == [float(r.tau) for r in routers] and all(t < 1e9 for t in taus)
    assert not any(m.training for m in model.modules())  # the routers go back to eval mode
    out = probe_forward(model, PROBES["mqar"](4, "easy", seed=10_003 + CALIBRATION_SEED_OFFSET), "cpu")
    for layer in out.layers:
        assert abs(layer.mask.float().mean().item() - 0.1) <= 1.0 / layer.mask.numel()


def test_transfer_scores_a_finished_cell_at_its_calibrated_budget_on_request(tmp_path, monkeypatch):
    """A finished cell's weights whose trained thresholds route nothing: scored as trained they keep no token, with
    --calibrate about the cell's 25%."""
    from tsham.experiments.probe_sweep import FINAL_SUFFIX
    from tsham.probes.resume import save_loop_state

    seen = []
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: seen.append(rows))
    cut, model = _cut_state(tmp_path, "tiny", "random")
    for block in model.stack.blocks:
        block.mixer.router.tau.fill_(1e9)
    routed = cut.with_name(cut.name.removesuffix(".ckpt") + FINAL_SUFFIX)
    save_loop_state(routed, model, None, 2, 2, [], 0.0)
    fixed, _ = _cut_state(tmp_path, "tiny", "oracle")
    probe_transfer.main([str(routed), str(fixed), "--levels", "easy", "--n", "8", "--calibrate", "--name", "x"])
    probe_transfer.main([str(routed), "--levels", "easy", "--n", "8", "--name", "x"])
    assert [r["threshold"] for r in seen[0]] == ["calibrated", "fixed"]  # the oracle takes no budget
    assert [r["threshold"] for r in seen[1]] == ["trained"]
    assert seen[1][0]["kv_fraction"] == 0 and abs(seen[0][0]["kv_fraction"] - 0.25) < 0.1


def test_transfer_scores_one_router_at_each_budget_it_is_asked_for(tmp_path, monkeypatch):
    """--budgets: one row per KV fraction for a budgeted router, each routing about that fraction; a cell without
    a budget (the oracle) is scored once; --budgets without --calibrate or outside (0, 1) is refused."""
    seen = []
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: seen.append(rows))
    routed, _ = _cut_state(tmp_path, "tiny", "random")
    fixed, _ = _cut_state(tmp_path, "tiny", "oracle")
    probe_transfer.main([str(routed), str(fixed), "--levels", "easy", "--n", "8", "--calibrate",
                         "--budgets", "0.05", "0.5", "--name", "x"])
    rows = seen[0]
    assert [(r["policy"], r["threshold"]) for r in rows] == [("random", "calibrated")] * 2 + [("oracle", "fixed")]
    assert [r["budget"] for r in rows[:2]] == [0.05, 0.5]
    assert rows[0]["kv_fraction"] < 0.15 and abs(rows[1]["kv_fraction"] - 0.5) < 0.15
    for bad in (["--budgets", "0.1"], ["--calibrate", "--budgets", "0"], ["--calibrate", "--budgets", "1.5"]):
        with pytest.raises(SystemExit):
            probe_transfer.main([str(routed), "--levels", "easy", "--n", "2", *bad])


def test_transfer_rows_are_the_sweeps_rows_and_the_report_reads_them(tmp_path, monkeypatch):
    """--rows: one row per test sequence in the sweep's columns (averaging to the summary's RS), labelled with
    --recipe, and `probe_sweep report` writes its table and frontier from them; --recipe without --rows is refused."""
    import argparse

    import pandas as pd
    from tsham.experiments.probe_report import report

    summaries = []
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: summaries.append(rows))
    routed, _ = _cut_state(tmp_path, "tiny", "random")
    full, _ = _cut_state(tmp_path, "tiny", "all")
    out = tmp_path / "rows.csv.gz"
    probe_transfer.main([str(routed), str(full), "--levels", "easy", "--n", "6", "--calibrate", "--budgets", "0.1",
                         "0.5", "--rows", str(out), "--recipe", "zero-shot", "--name", "x"])
    rows = pd.read_csv(out)
    assert len(rows) == 3 * 6 and set(rows["recipe"]) == {"zero-shot"}
    assert {"probe", "level", "policy", "budget", "seed", "example", "RS", "kv_fraction", "kv_bytes"} <= set(rows)
    means = rows.groupby(["policy", "budget"])["RS"].mean()
    for summary in summaries[0]:
        assert means[(summary["policy"], summary["budget"])] == pytest.approx(summary["RS"])
    report(argparse.Namespace(rows=str(out), name="t", results=str(tmp_path), plots=None, note=None))
    assert "zero-shot" in (tmp_path / "t.md").read_text() and list((tmp_path / "probes").glob("t_*.png"))
    with pytest.raises(SystemExit):
        probe_transfer.main([str(routed), "--levels", "easy", "--n", "2", "--recipe", "zero-shot"])


def test_transfer_plot_draws_the_frontier_of_results_files_once_per_cell(tmp_path, monkeypatch):
    """plot: the cell means of results files, a cell scored in two files counted once, --skip leaving cells out;
    a missing file and rows of two levels are refused."""
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: (
        (tmp_path / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}))))
    routed, _ = _cut_state(tmp_path, "tiny", "random")
    full, _ = _cut_state(tmp_path, "tiny", "all")
    args = ["--n", "4", "--calibrate", "--budgets", "0.1", "0.5"]
    probe_transfer.main([str(routed), str(full), "--levels", "easy", *args, "--name", "a"])
    probe_transfer.main([str(routed), "--levels", "easy", *args, "--name", "b"])
    probe_transfer.main([str(full), "--levels", "medium", "--n", "4", "--name", "c"])
    frame = probe_transfer.results_frame([tmp_path / "a.json", tmp_path / "b.json"])
    assert sorted(zip(frame.policy, frame.budget, strict=True)) == [("all", 1.0), ("random", 0.1), ("random", 0.5)]
    assert list(probe_transfer.results_frame([tmp_path / "a.json"], skip=("-all-",)).policy) == ["random"] * 2
    png = tmp_path / "f.png"
    probe_transfer.main(["plot", str(png), str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert png.stat().st_size > 0
    with pytest.raises(FileNotFoundError):
        probe_transfer.main(["plot", str(png), str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit):
        probe_transfer.main(["plot", str(png), str(tmp_path / "a.json"), str(tmp_path / "c.json")])
