import json

import numpy as np
import pytest


def write_run(folder, seed, mse, its, published=0.33, lr="3e-05", minutes="2.5"):
    """A results file as ``ltsf`` writes it: one horizon, the fine-tune's command in its meta."""
    seed_part = "" if seed == 0 else f" --seed {seed}"
    meta = {"model": "m", "protocol": "L=2048",
            "finetune": f"tsham finetune --model m --input r{seed}/x.csv --out r{seed}/x --lr {lr} --horizons 336"
                        f"{seed_part} --overwrite --max-minutes {minutes} (minutes cap {minutes})"}
    row = {"dataset": "etth2", "horizon": 336, "MSE": mse, "MSE_patchtst_windows": its, "PatchTST64_MSE": published,
           "best_step": 50 * seed, "finetune_steps": 400}
    path = folder / f"run{seed}.json"
    path.write_text(json.dumps({"meta": meta, "rows": [row]}))
    return path


def test_the_band_reads_each_seed_once_and_compares_the_mean_with_the_published_number(tmp_path):
    from tsham.experiments.ltsf_band import band, table

    paths = [write_run(tmp_path, 2, 0.39, 0.36), write_run(tmp_path, 0, 0.38, 0.35),
             write_run(tmp_path, 1, 0.36, 0.32, minutes="2.0")]  # another cap is the same recipe
    (row,) = band(paths)
    assert row["seeds"] == [0, 1, 2] and row["steps"] == [0, 50, 100] and row["its"] == [0.35, 0.32, 0.36]
    assert row["its_mean"] == pytest.approx(np.mean([0.35, 0.32, 0.36]))
    assert row["its_sd"] == pytest.approx(np.std([0.35, 0.32, 0.36], ddof=1))
    assert row["runs_below"] == 1 and not row["mean_below"]  # one lucky seed does not make the recipe beat it
    assert "| etth2 | 336 | 0, 1, 2 (0, 50, 100) |" in table([row]) and "| 1 of 3 | no |" in table([row])
    with pytest.raises(ValueError, match="two runs of one seed"):
        again = tmp_path / "again"
        again.mkdir()
        band([*paths, write_run(again, 0, 0.3, 0.3)])


def test_a_band_is_of_one_recipe_and_one_run_has_no_spread(tmp_path):
    from tsham.experiments.ltsf_band import band

    (alone,) = band([write_run(tmp_path, 0, 0.38, 0.32)])
    assert alone["runs_below"] == 1 and alone["mean_below"] and np.isnan(alone["its_sd"])
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="another recipe"):
        band([write_run(tmp_path, 0, 0.38, 0.32), write_run(other, 1, 0.38, 0.32, lr="1e-05")])
