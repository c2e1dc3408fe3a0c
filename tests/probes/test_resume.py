"""Resumable probe training: a loop cut mid-run and resumed from its saved state ends where the uncut one ends; bad
loop states are refused by name; the sweep carries cut cells' states to the device and back."""

import argparse
import os
import subprocess
from pathlib import Path

import pytest
import torch
from tsham.probes.resume import read_loop_state
from tsham.probes.runner import probe_config, probe_context_length, train_probe_model


def _config(policy: str = "random", d_model: int = 16):
    # random routing: its draws must not depend on where a run was cut
    return probe_config(policy, 0.25, patch_length=4, d_model=d_model, n_layers=1,
                        context_length=probe_context_length("mqar", "easy"))


class Cut(Exception):
    pass


BUDGET_FIRST = {"curriculum": "easy", "curriculum_budget": 0.5}  # the routers at 50% in a curriculum's first stage
GUIDED_FIRST = {"curriculum": "easy", "curriculum_guide": True}  # the needles routed on top in the first stage


@pytest.mark.parametrize("policy, stages", [("random", {}), ("surprise", {}), ("learned", {}),  # the controllers'
                                            # state must resume too, and a stage's budget, cut in either stage
                                            ("surprise", {**BUDGET_FIRST, "curriculum_steps": 3}),
                                            ("surprise", {**BUDGET_FIRST, "curriculum_steps": 6}),
                                            # a guided first stage: the needles reach the resumed stage's routers
                                            ("surprise", {**GUIDED_FIRST, "curriculum_steps": 3}),
                                            ("random", {**GUIDED_FIRST, "curriculum_steps": 6})])
def test_a_cut_loop_resumes_to_the_uncut_weights(tmp_path, monkeypatch, policy, stages):
    import tsham.probes.runner as runner

    steps, history_uncut, history_cut = 7, [], []
    uncut = train_probe_model("mqar", "easy", _config(policy), steps, batch_size=4, history=history_uncut, **stages)
    checkpoint = tmp_path / "cell.ckpt"
    # cut at step 5: the draw of step 5 fails, as a call's time limit kills the worker; a state is saved before
    # every step (checkpoint_every=0), the last one before step 5 with 5 steps done
    real_loop, real_batch = runner.train_loop, runner.training_batch

    def cutting_batch(model, batch, **kwargs):
        if cutting_batch.calls == 5:
            raise Cut
        cutting_batch.calls += 1
        return real_batch(model, batch, **kwargs)

    cutting_batch.calls = 0
    monkeypatch.setattr(runner, "training_batch", cutting_batch)
    monkeypatch.setattr(runner, "train_loop", lambda *a, **k: real_loop(*a, **{**k, "checkpoint_every": 0.0}))
    with pytest.raises(Cut):
        train_probe_model("mqar", "easy", _config(policy), steps, batch_size=4, history=history_cut,
                          checkpoint=checkpoint, **stages)
    assert read_loop_state(checkpoint)["next_step"] == 5
    drawn = []
    monkeypatch.setattr(runner, "training_batch",
                        lambda model, batch, **kw: drawn.append(1) or real_batch(model, batch, **kw))
    history_resumed: list = []
    resumed = train_probe_model("mqar", "easy", _config(policy), steps, batch_size=4, history=history_resumed,
                                checkpoint=checkpoint, **stages)
    for (name, p), q in zip(uncut.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)  # weights and the routers' thresholds
    targets = [[m.target for m in model.modules() if hasattr(m, "target")] for model in (uncut, resumed)]
    own = [None] if policy == "random" else [0.25]  # random routing: a fixed threshold, no target
    assert targets[0] == targets[1] and (not stages or targets[0] == own)  # scored at their own budget
    assert [h[:2] for h in history_resumed] == [h[:2] for h in history_uncut]  # steps 0, 50..., and the last
    assert len(drawn) == 2  # steps 5 and 6 only: it resumed, it did not train again from the start


def test_bad_loop_states_are_refused_by_name(tmp_path):
    checkpoint = tmp_path / "cell.ckpt"
    checkpoint.write_bytes(b"half a file")
    with pytest.raises(ValueError, match="cell.ckpt: not a readable loop state"):
        train_probe_model("mqar", "easy", _config(), 2, batch_size=2, checkpoint=checkpoint)
    torch.save({"weights": 1}, checkpoint)
    with pytest.raises(ValueError, match="not a loop state of format"):
        train_probe_model("mqar", "easy", _config(), 2, batch_size=2, checkpoint=checkpoint)
    checkpoint.unlink()
    train_probe_model("mqar", "easy", _config(), 3, batch_size=2, checkpoint=checkpoint)
    assert not checkpoint.exists()  # never saved: a minute had not passed (the caller deletes it otherwise)
    from tsham.probes.resume import save_loop_state
    from tsham.probes.runner import TshamModel

    model = TshamModel(_config())
    save_loop_state(checkpoint, model, torch.optim.AdamW(model.parameters()), 1, 3, [], 0.0)
    with pytest.raises(ValueError, match="run of 3 steps, this one has 4"):
        train_probe_model("mqar", "easy", _config(), 4, batch_size=2, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="another model"):
        train_probe_model("mqar", "easy", _config(d_model=32), 3, batch_size=2, checkpoint=checkpoint)


def _state(path, next_step: int) -> None:
    from tsham.probes.resume import save_loop_state
    from tsham.probes.runner import TshamModel

    model = TshamModel(_config())
    save_loop_state(path, model, torch.optim.AdamW(model.parameters()), next_step, 10, [], 0.0)


def test_the_sweep_carries_cut_cells_to_the_device_and_back(tmp_path):
    from tsham.experiments import probe_sweep

    run, slim = tmp_path / "run", tmp_path / "slim"
    args = dict(seeds=None, workers=1, device="cpu", minutes=None, cuda_graph=False)
    probe_sweep.run(argparse.Namespace(preset=["tiny"], out=str(run), **args))
    cells = run / "cells"
    assert not list(cells.glob("*.ckpt*"))  # finished cells leave no loop state (their weights: <cell>.final.pt)
    cut = sorted(cells.glob("*.csv"))[0]
    cut.unlink()
    state = cut.with_suffix(".ckpt")
    _state(state, 3)
    (slim / "cells").mkdir(parents=True)
    _state(slim / "cells" / "finished-since.ckpt", 9)  # left in a slim copy reused from an earlier call
    probe_sweep.slim(argparse.Namespace(run=str(run), to=str(slim)))
    assert read_loop_state(slim / "cells" / state.name)["next_step"] == 3
    assert not (slim / "cells" / "finished-since.ckpt").exists()
    # the device call advanced the cut cell, and finished another whose state the run still had
    _state(slim / "cells" / state.name, 5)
    done = sorted(cells.glob("*.csv"))[0]
    (slim / "cells" / done.name).write_bytes(done.read_bytes())
    (slim / "cells" / done.with_suffix(".json").name).write_bytes(b"{}")
    stale = cells / done.with_suffix(".ckpt").name
    _state(stale, 1)
    probe_sweep.merge(argparse.Namespace(back=str(slim), run=str(run)))
    assert read_loop_state(state)["next_step"] == 5 and stale.exists()  # a cell already in the run is left alone
    _state(state, 7)  # the run's state is newer than what comes back: merging never goes back in time
    done.unlink()
    probe_sweep.merge(argparse.Namespace(back=str(slim), run=str(run)))
    assert read_loop_state(state)["next_step"] == 7
    assert done.is_file() and not stale.exists()  # merged as finished: its loop state goes


@pytest.mark.parametrize("sizes", [(1,), (20,), (40, 20), (20, 1)])
def test_the_pool_packs_big_runs_in_parts_that_join(tmp_path, sizes):
    """Each pack replaces the last one whole: parts of a bigger earlier pack do not stay behind."""
    out, folder = tmp_path / "out", tmp_path / "runs" / "slim"
    out.mkdir()
    folder.mkdir(parents=True)
    script = Path(__file__).parents[2] / "experiments" / "gpu_pool.sh"
    for megabytes in sizes:
        (folder / "cell.ckpt").write_bytes(os.urandom(megabytes * 1_000_000))  # incompressible, as weights are
        subprocess.run(["bash", "-c", f"source {script} && pool_pack runs/slim probes.tgz"], cwd=tmp_path,
                       env={**os.environ, "OUT": str(out)}, check=True)
    names = sorted(p.name for p in out.iterdir())  # hidden temporary files included
    assert names == (["probes.tgz"] if megabytes == 1 else ["probes.tgz.part00", "probes.tgz.part01"])
    assert all(p.stat().st_size <= 16_000_000 for p in out.iterdir())
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run(f"cat {out}/probes.tgz* | tar xz -C {back}", shell=True, check=True)
    assert (back / "runs" / "slim" / "cell.ckpt").read_bytes() == (folder / "cell.ckpt").read_bytes()


def test_a_sweep_starts_long_cells_while_a_few_minutes_remain(tmp_path, monkeypatch):
    """Cells done so far took 1000 s: with 5 minutes left the sweep's cells still start (each saves its state every
    minute and the next run resumes it), with 2 minutes left none does."""
    import tsham.experiments.common as common
    from tsham.experiments import probe_sweep

    real_pool, not_run = common.run_pool, []

    def pool(cells, worker, name, workers, deadline, device, **kwargs):  # the real gate, a no-op cell
        not_run.append(real_pool(cells, str, name, 1, deadline, "cpu", **kwargs))

    monkeypatch.setattr(common, "run_pool", pool)
    out = tmp_path / "run"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "earlier.json").write_text('{"probe": "mqar", "train_seconds": 1000.0}')
    args = dict(preset=["tiny"], seeds=None, workers=1, device="cpu", cuda_graph=False, out=str(out), probes=None)
    probe_sweep.run(argparse.Namespace(minutes=2, **args))
    probe_sweep.run(argparse.Namespace(minutes=5, **args))
    assert not_run == [4, 0]


def test_a_resumed_optimizer_keeps_this_runs_settings_and_the_files_moments(tmp_path):
    """The file gives moments and step counts; learning rate, capturable and the like are this run's (a cell saved
    eagerly may resume under a CUDA graph)."""
    from tsham.probes.resume import load_loop_state, save_loop_state

    model = torch.nn.Linear(3, 1)
    saved = torch.optim.AdamW(model.parameters(), lr=0.5, weight_decay=0.3)
    model(torch.ones(2, 3)).sum().backward()
    saved.step()
    save_loop_state(tmp_path / "s.ckpt", model, saved, 1, 10, [], 0.0)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    load_loop_state(tmp_path / "s.ckpt", model, fresh, 10)
    assert fresh.param_groups[0]["lr"] == 1e-3 and fresh.param_groups[0]["weight_decay"] == 0.0
    torch.testing.assert_close(fresh.state[model.weight]["exp_avg"], saved.state[model.weight]["exp_avg"])


def test_a_finished_runs_weights_load_for_scoring_but_never_resume(tmp_path):
    """Without the optimizer a state keeps a finished run's weights (a third of the file): readable, not resumable."""
    from tsham.probes.resume import load_loop_state, read_loop_state, save_loop_state

    model = torch.nn.Linear(3, 1)
    save_loop_state(tmp_path / "done.final.pt", model, None, 10, 10, [(9, 0.5, 1.0)], 1.0)
    state = read_loop_state(tmp_path / "done.final.pt")
    assert state["optimizer"] is None and state["next_step"] == state["steps"] == 10
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())
    with pytest.raises(ValueError, match="finished run's weights without the optimizer"):
        load_loop_state(tmp_path / "done.final.pt", model, torch.optim.AdamW(model.parameters()), 10)


def test_a_model_starts_from_a_finished_runs_weights_and_calibration(tmp_path):
    """``init``: the weights and the calibrated thresholds of another run; at learning rate 0 nothing moves the
    weights (a calibrated threshold moves on: the router tracks its budget on the new batches)."""
    from tsham.probes.resume import save_loop_state

    first = train_probe_model("mqar", "easy", _config("surprise"), 3, batch_size=2, seed=1)
    save_loop_state(tmp_path / "first.final.pt", first, None, 3, 3, [], 0.0)
    later = train_probe_model("mqar", "medium", _config("surprise"), 2, batch_size=2, lr=0.0, seed=2,
                              init=tmp_path / "first.final.pt")
    for key, value in first.named_parameters():
        torch.testing.assert_close(dict(later.named_parameters())[key], value, rtol=0, atol=0)
    fresh = train_probe_model("mqar", "medium", _config("surprise"), 2, batch_size=2, lr=0.0, seed=2)
    assert any(not torch.equal(dict(fresh.named_parameters())[k], v) for k, v in first.named_parameters())
    calibrated = [n for n, m in first.named_modules() if getattr(m, "calibrated", False)]
    assert calibrated and all(dict(later.named_modules())[n].calibrated for n in calibrated)
    with pytest.raises(ValueError, match="cannot start from .*first.final.pt: it was written by another model"):
        train_probe_model("mqar", "easy", _config(d_model=32), 2, batch_size=2, init=tmp_path / "first.final.pt")
    with pytest.raises(ValueError, match="missing.pt: not a readable loop state"):
        train_probe_model("mqar", "easy", _config(), 2, batch_size=2, init=tmp_path / "missing.pt")


def test_a_sweep_cell_starts_from_another_presets_finished_cell(tmp_path, monkeypatch):
    """``init_from``: a preset whose cells start from another preset's finished cells of the same policy, budget and
    seed; without those weights it says which file it needs; its slim copy carries them to the device."""
    from tsham.experiments import probe_sweep

    tiny = probe_sweep.PRESETS["tiny"]
    later = {**tiny, "probes": {"mqar": {**tiny["probes"]["mqar"], "init_from": "tiny"}}, "lr": 0.0}
    monkeypatch.setitem(probe_sweep.PRESETS, "tiny_after", later)
    run = tmp_path / "run"
    args = dict(seeds=None, workers=1, device="cpu", minutes=None, cuda_graph=False, out=str(run))
    cell = probe_sweep.cells(later)[0]
    assert probe_sweep.cell_name(cell).endswith("-after-tiny")
    with pytest.raises(FileNotFoundError, match="run preset 'tiny' into this run first"):
        probe_sweep.run_cell(cell, str(run), "cpu")
    probe_sweep.run(argparse.Namespace(preset=["tiny"], **args))
    slim = tmp_path / "slim"
    probe_sweep.slim(argparse.Namespace(run=str(run), to=str(slim)))
    assert not list((slim / "cells").glob("*.final.pt"))  # finished cells' weights stay behind
    for weights in (run / "cells").glob("*.final.pt"):  # a run of its own, with the weights it starts from
        (run / "cells" / weights.with_suffix("").with_suffix(".csv").name).unlink()
    probe_sweep.slim(argparse.Namespace(run=str(run), to=str(tmp_path / "slim2")))
    assert len(list((tmp_path / "slim2" / "cells").glob("*.final.pt"))) == 4  # without their rows: they travel
    probe_sweep.run(argparse.Namespace(preset=["tiny_after"], **args))
    for c in probe_sweep.cells(later):
        start = read_loop_state(run / "cells" / f"{probe_sweep.cell_name(probe_sweep.initial_cell(c))}.final.pt")
        done = read_loop_state(run / "cells" / f"{probe_sweep.cell_name(c)}.final.pt")
        for key, value in start["model"].items():  # learning rate 0: the weights it started from
            torch.testing.assert_close(done["model"][key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="init_from 'nowhere': no such preset"):
        probe_sweep.cells({**later, "probes": {"mqar": {**tiny["probes"]["mqar"], "init_from": "nowhere"}}})
    with pytest.raises(ValueError, match="init_from 'tiny': 0 cells of mqar, policy random, budget 0.5"):
        probe_sweep.cells({**later, "budgets": (0.5,)})


def test_a_router_starts_from_full_attentions_weights_with_its_own_parameters_fresh(tmp_path):
    """``fresh_routers``: the same model under another policy; every weight but the router's comes from the file."""
    from tsham.experiments import probe_sweep
    from tsham.probes.resume import save_loop_state

    from tsham.model import TshamModel

    full = train_probe_model("mqar", "easy", _config("all"), 2, batch_size=2, seed=1)
    save_loop_state(tmp_path / "all.final.pt", full, None, 2, 2, [], 0.0)
    later = train_probe_model("mqar", "easy", _config("distilled"), 2, batch_size=2, lr=0.0, seed=2,
                              init=tmp_path / "all.final.pt", fresh_routers=True)
    own = dict(later.named_parameters())
    for key, value in full.named_parameters():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert any(".router.mlp." in key for key in own)
    with pytest.raises(ValueError, match="cannot start from .*all.final.pt: it was written by another model"):
        train_probe_model("mqar", "easy", _config("distilled"), 2, batch_size=2, init=tmp_path / "all.final.pt")
    with pytest.raises(ValueError, match="written by another model"):  # another width
        train_probe_model("mqar", "easy", _config("distilled", d_model=32), 2, batch_size=2,
                          init=tmp_path / "all.final.pt", fresh_routers=True)
    own_qk = probe_config("all", 1.0, patch_length=4, d_model=16, n_layers=1, kv_own_qk=True,
                          context_length=probe_context_length("mqar", "easy"))
    save_loop_state(tmp_path / "own_qk.final.pt", TshamModel(own_qk), None, 0, 0, [], 0.0)
    with pytest.raises(ValueError, match="beyond the routers'.*kv_qk_proj"):  # weights the model lacks
        train_probe_model("mqar", "easy", _config("distilled"), 2, batch_size=2,
                          init=tmp_path / "own_qk.final.pt", fresh_routers=True)
    # the sweep: init_policy picks that policy's cell of the preset it starts from, whatever its budget
    tiny = probe_sweep.PRESETS["tiny"]
    setting = {**tiny["probes"]["mqar"], "init_from": "tiny", "init_policy": "all"}
    later = {**tiny, "probes": {"mqar": setting}, "policies": ("distilled",), "controls": False}
    (cell,) = probe_sweep.cells(later)
    assert probe_sweep.cell_name(cell).endswith("-after-tiny-all")
    assert probe_sweep.initial_cell(cell)["policy"] == "all"
    with pytest.raises(ValueError, match="0 cells of mqar, policy event, seed 0"):
        probe_sweep.cells({**later, "probes": {"mqar": {**setting, "init_policy": "event"}}})


def test_routers_only_trains_the_router_and_leaves_every_other_weight(tmp_path):
    """``routers_only``: a router fitted to a finished model; the model it routes for does not move."""
    from tsham.experiments import probe_sweep
    from tsham.probes.resume import save_loop_state

    from tsham.model import TshamModel

    full = train_probe_model("mqar", "easy", _config("all"), 2, batch_size=2, seed=1)
    save_loop_state(tmp_path / "all.final.pt", full, None, 2, 2, [], 0.0)
    torch.manual_seed(2)
    fresh = {k: v.clone() for k, v in TshamModel(_config("distilled")).named_parameters() if ".router." in k}
    fitted = train_probe_model("mqar", "easy", _config("distilled"), 3, batch_size=2, lr=1e-2, seed=2,
                               init=tmp_path / "all.final.pt", fresh_routers=True, routers_only=True)
    own = dict(fitted.named_parameters())
    for key, value in full.named_parameters():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    moved = [k for k, v in fresh.items() if not torch.equal(own[k], v)]
    assert moved, "the router's own parameters did not train"
    with pytest.raises(ValueError, match="routers_only trains the routers of a finished model: give init"):
        train_probe_model("mqar", "easy", _config("distilled"), 2, batch_size=2, routers_only=True)
    with pytest.raises(ValueError, match="policy 'all' has no router parameters"):
        train_probe_model("mqar", "easy", _config("all"), 2, batch_size=2, init=tmp_path / "all.final.pt",
                          routers_only=True)
    tiny = probe_sweep.PRESETS["tiny"]
    setting = {**tiny["probes"]["mqar"], "init_from": "tiny", "init_policy": "all", "routers_only": True}
    (cell,) = probe_sweep.cells({**tiny, "probes": {"mqar": setting}, "policies": ("distilled",), "controls": False})
    assert probe_sweep.cell_name(cell).endswith("-after-tiny-all-routersonly")


def test_router_hidden_sizes_the_distilled_and_learned_routers():
    """``router_hidden`` (probe_config, the sweep's recipe key) widens the routers' MLP; the cell name says so."""
    from tsham.experiments import probe_sweep

    from tsham.model import TshamModel

    for policy in ("distilled", "learned"):
        model = TshamModel(probe_config(policy, 0.1, patch_length=4, d_model=16, n_layers=1, router_hidden=7))
        widths = {p.shape[0] for n, p in model.named_parameters() if n.endswith("router.mlp.0.weight")}
        assert widths == {7}, (policy, widths)
    tiny = probe_sweep.PRESETS["tiny"]
    (cell,) = probe_sweep.cells({**tiny, "probes": {"mqar": {**tiny["probes"]["mqar"], "router_hidden": 7}},
                                 "policies": ("distilled",), "controls": False})
    assert "-h7" in probe_sweep.cell_name(cell)
    assert probe_sweep.cell_config(cell).ham.router_kwargs["hidden"] == 7
