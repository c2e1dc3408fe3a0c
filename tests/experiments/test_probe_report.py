"""The probe sweep's cell names and its report's tables for recipes with a curriculum budget or guide."""

import pandas as pd
from tsham.experiments.probe_report import lend_controls
from tsham.experiments.probe_sweep import PRESETS, cell_name, cells


def test_a_curriculum_budget_renames_only_the_cells_it_changes():
    base = {cell_name(c) for c in cells(PRESETS["a8_curriculum"])}
    kv = cells(PRESETS["a8_kv_curriculum"])
    controls = [c for c in kv if c["policy"] in ("all", "none")]
    routers = [c for c in kv if c["policy"] not in ("all", "none")]
    assert len(controls) == 6 and all(c["curriculum_budget"] is None and cell_name(c) in base for c in controls)
    assert len(routers) == 9 and all(c["curriculum_budget"] == 0.4 and cell_name(c).endswith("-kv0.4")
                                     for c in routers)


def test_a_curriculum_guide_renames_only_the_cells_it_changes():
    base = {cell_name(c) for c in cells(PRESETS["a8_curriculum"])}
    guided = cells(PRESETS["a8_guided_curriculum"])
    controls = [c for c in guided if c["policy"] in ("all", "none")]
    routers = [c for c in guided if c["policy"] not in ("all", "none")]
    assert controls and all(not c["curriculum_guide"] and cell_name(c) in base for c in controls)
    assert routers and all(c["curriculum_guide"] and cell_name(c).endswith("x6000-guided") for c in routers)


def _rows(recipe: str, policies, seeds) -> pd.DataFrame:
    return pd.DataFrame([{"probe": "rare_motif", "level": "medium", "recipe": recipe, "policy": p, "seed": s,
                          "RS": float(s)} for p in policies for s in seeds])


def test_controls_are_lent_to_a_curriculum_budget_recipe_for_its_own_seeds_only():
    rows = pd.concat([_rows("r9000", ["all", "none", "surprise"], [0, 1, 2, 3]),
                      _rows("r9000-kv0.4", ["surprise"], [0, 2]),
                      _rows("r9000-kv0.4-guided", ["surprise"], [1]), _rows("r9000-guided", ["random"], [3]),
                      _rows("other-kv0.4", ["surprise"], [0])], ignore_index=True)  # nothing to borrow from
    out, source = lend_controls(rows)
    assert source == {"r9000-kv0.4": "r9000", "r9000-kv0.4-guided": "r9000", "r9000-guided": "r9000"}
    lent = out[(out["recipe"] == "r9000-kv0.4") & out["policy"].isin(["all", "none"])]
    assert sorted(lent["seed"]) == [0, 0, 2, 2] and len(out) == len(rows) + 8
    assert out[(out["recipe"] == "other-kv0.4")]["policy"].tolist() == ["surprise"]
    mine = _rows("r9000-kv0.4", ["all", "none", "surprise"], [0])  # a recipe with its own controls keeps them
    assert "r9000-kv0.4" not in lend_controls(pd.concat([rows, mine], ignore_index=True))[1]
