import json

import pytest
import torch
from tsham.experiments import probe_transfer
from tsham.experiments.probe_sweep import PRESETS, cell_name, cells
from tsham.probes.resume import save_loop_state
from tsham.probes.runner import probe_config, probe_context_length

from tsham.model import TshamModel


def _tiny_state(folder, policy="random"):
    """A loop state of the tiny preset's cell, as a cut cell leaves it (untrained weights: the tool only loads)."""
    cell = next(c for c in cells(PRESETS["tiny"]) if c["policy"] == policy)
    config = probe_config(cell["policy"], cell["budget"], patch_length=cell["patch_length"], d_model=cell["d_model"],
                          n_layers=cell["n_layers"], context_length=probe_context_length(cell["probe"], cell["level"]))
    model = TshamModel(config)
    path = folder / f"{cell_name(cell)}.ckpt"
    save_loop_state(path, model, torch.optim.AdamW(model.parameters()), 1, cell["steps"], [], 0.0)
    return path, model


def test_transfer_scores_a_cut_cell_at_other_levels(tmp_path, monkeypatch):
    path, model = _tiny_state(tmp_path)
    loaded, cell, step = probe_transfer.load_cell_model(path, "medium")
    assert cell["probe"] == "mqar" and cell["policy"] == "random" and step == 1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    seen = []
    monkeypatch.setattr(probe_transfer, "write_results", lambda name, meta, rows, table: seen.append(rows))
    probe_transfer.main([str(path), "--levels", "easy", "medium", "--n", "4", "--name", "x"])
    rows = seen[0]
    assert [r["level"] for r in rows] == ["easy", "medium"] and all(0 <= r["kv_fraction"] <= 1 for r in rows)
    json.dumps(rows)  # plain numbers: the results file takes them


def test_transfer_refuses_a_state_no_preset_names(tmp_path):
    path, _ = _tiny_state(tmp_path)
    other = path.with_name("mqar-easy-p4-random-0.25-s9-unknown.ckpt")
    path.rename(other)
    with pytest.raises(ValueError, match="not the loop state of a cell of a known preset"):
        probe_transfer.load_cell_model(other, "easy")
