"""The routing benchmark's bookkeeping on hand-made cells: learning-rate choice, seeds, NaN, Pareto."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from tsham.experiments.routing_policies import select_lrs
from tsham.experiments.routing_report import cell_counts, load_cells, summarise, throughput_table


def cell(policy, budget, seed, lr, test, kv, val=0.0):
    return {"task": "t", "policy": policy, "budget": budget, "seed": seed, "lr": lr, "val": val, "test": test,
            "metric": "pinball loss", "higher_is_better": False, "kv_realised": kv, "kv_per_layer": [kv],
            "train_tokens_per_s": 1.0, "peak_memory_mib": None, "router_share": 0.0, "routing_map": None}


def test_learning_rate_choice_treats_nan_as_the_worst():
    logs = [cell("p", 0.1, 0, 1e-3, 0, 0, val=math.nan), cell("p", 0.1, 0, 3e-3, 0, 0, val=0.9),
            cell("q", 0.1, 0, 1e-3, 0, 0, val=0.2), cell("q", 0.1, 0, 3e-3, 0, 0, val=0.3)]
    assert select_lrs(logs, {"t": False}) == {("t", "p"): 3e-3, ("t", "q"): 1e-3}  # lower loss wins
    assert select_lrs(logs, {"t": True})[("t", "q")] == 3e-3  # higher recall skill wins


def test_summary_counts_finite_seeds_and_keeps_nan_off_the_frontier(tmp_path):
    cells = [cell("none", 0.0, s, 1e-3, 1.0 + 0.01 * s, 0.0) for s in range(3)]
    cells += [cell("a", 0.1, 0, 1e-3, 0.8, 0.1), cell("a", 0.1, 1, 1e-3, math.nan, 0.1),  # one seed diverged
              cell("a", 0.1, 0, 3e-3, 0.1, 0.1)]  # the other learning rate: not chosen, not reported
    cells += [cell("b", 0.1, 0, 1e-3, math.nan, 0.05)]  # every seed diverged
    cells += [cell("c", 0.1, s, 1e-3, 0.9, 0.2) for s in range(2)]  # more KV, worse than a: dominated
    (tmp_path / "cells").mkdir()
    for i, c in enumerate(cells):
        (tmp_path / "cells" / f"{i}.json").write_text(json.dumps(c))
    (tmp_path / "learning_rates.json").write_text(json.dumps([["t", p, 1e-3] for p in ("none", "a", "b", "c")]))
    table = summarise(load_cells(tmp_path)).set_index("policy")
    assert table.loc["a", "test"] == pytest.approx(0.8) and table.loc["a", "seeds"] == 1
    assert table.loc["a", "failed_seeds"] == 1 and np.isnan(table.loc["a", "test_std"])  # no std from one seed
    assert table.loc["none", "test_std"] == pytest.approx(0.01)
    assert table.loc["b", "seeds"] == 0 and not table.loc["b", "pareto"]
    assert table["pareto"].to_dict() == {"none": True, "a": True, "b": False, "c": False}


def test_report_says_when_the_sweep_has_not_finished(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "0.json").write_text(json.dumps(cell("a", 0.1, 0, 1e-3, 0.5, 0.1)))
    with pytest.raises(SystemExit, match="has not finished"):
        load_cells(tmp_path)


def test_synthetic_cells_report_their_gift_scores_as_the_task_gift(tmp_path):
    def synthetic(policy, seed, lr, mase):
        gift = {"metric": "geo-mean MASE ratio", "test": mase, "CRPS_ratio": mase - 0.2, "kv_realised": 0.3,
                "kv_per_layer": [0.2, 0.4]}
        return {**cell(policy, 0.1, seed, lr, 0.5, 0.1), "task": "synthetic", "gift": gift}

    cells = [synthetic("p", s, 1e-3, 0.9 + 0.01 * s) for s in range(2)] + [synthetic("p", 0, 3e-3, 0.1)]
    cells += [synthetic("event", 0, 1e-3, 0.8)]  # GIFT has no flags: event would keep nothing there
    (tmp_path / "cells").mkdir()
    for i, c in enumerate(cells):
        (tmp_path / "cells" / f"{i}.json").write_text(json.dumps(c))
    (tmp_path / "learning_rates.json").write_text(json.dumps([["synthetic", "p", 1e-3], ["synthetic", "event", 1e-3]]))
    loaded = load_cells(tmp_path)
    assert cell_counts(loaded) == ("4 trained, 3 of them reported (the rest served the learning-rate sweep), plus 2 "
                                   "GIFT rows scored on the synthetic models")
    assert set(loaded.loc[loaded["task"] == "gift", "policy"]) == {"p"}
    table = summarise(loaded).set_index("task").query("policy == 'p'")
    # the chosen rate's two seeds on both tasks; the GIFT row reads the GIFT scores, not the synthetic test loss
    assert table.loc["synthetic", "test"] == pytest.approx(0.5) and table.loc["synthetic", "kv_realised"] == 0.1
    assert table.loc["gift", "test"] == pytest.approx(0.905) and table.loc["gift", "seeds"] == 2
    assert table.loc["gift", "crps_ratio"] == pytest.approx(0.705) and table.loc["gift", "kv_realised"] == 0.3
    assert table.loc["gift", "metric"] == "geo-mean MASE ratio"


def test_throughput_table_takes_each_task_from_the_isolated_timing_where_it_has_one():
    table = pd.DataFrame([{"task": t, "policy": p, "tokens_per_s": v, "peak_memory_mib": 1.0, "router_share": 0.0}
                          for t, p, v in (("a", "none", 100.0), ("a", "surprise", 50.0), ("b", "none", 10.0),
                                          ("b", "surprise", 5.0), ("gift", "none", 1.0))])
    alone = [{"task": "a", "policy": "none", "tokens_per_s": 200.0, "peak_memory_mib": 1.0, "router_share": 0.0},
             {"task": "a", "policy": "surprise", "tokens_per_s": 150.0, "peak_memory_mib": 1.0, "router_share": 0.0}]
    text = throughput_table(table, alone)
    assert "a: tokens/s (vs none), alone" in text and "b: tokens/s (vs none), shared device" in text
    assert "gift" not in text  # the synthetic models' rows: no training of their own
    assert "| surprise | 150 (0.75x) | 5 (0.50x) |" in text


def test_timing_spread_states_how_far_one_policys_rounds_lie_apart():
    from tsham.experiments.routing_report import timing_spread

    rows = [{"rounds": [80.0, 100.0, 90.0]}, {"rounds": [60.0, 100.0, 100.0]}, {"rounds": [90.0, 100.0, 95.0]}]
    text = timing_spread(rows)
    assert "best of 3 rounds" in text and "a median 20% apart (up to 40%)" in text
    assert timing_spread(None) == "" and timing_spread([{"tokens_per_s": 1.0}]) == ""  # older files: no rounds


def test_training_modes_say_which_tasks_mixed_eager_and_graphed_cells():
    from tsham.experiments.routing_report import training_modes

    cells = pd.DataFrame({"task": ["a", "a", "b", "b", "c", "gift"],
                          "cuda_graph": [np.nan, True, True, True, np.nan, np.nan]})
    assert training_modes(cells) == "a 1 of 2 graphed; b all graphed; c all eager"
    assert training_modes(cells.drop(columns="cuda_graph")) == "a all eager; b all eager; c all eager"


def test_the_best_policy_at_a_budget_never_rests_on_memory_the_others_did_not_have():
    """A policy that realised far more than the nominal budget is listed apart, not ranked first."""
    from tsham.experiments.routing_report import winners

    table = pd.DataFrame({"task": "t", "budget_label": "0.1", "higher_is_better": False,
                          "policy": ["surprise", "recency", "random", "none"], "test": [0.50, 0.40, 0.55, 0.1],
                          "kv_realised": [0.11, 0.22, 0.10, 0.0]})
    row = winners(table).splitlines()[2]
    assert row.startswith("| t | 0.1 | surprise (0.110) | 0.5000 | random (0.100, 0.5500) | recency (0.220, 0.4000)")
    fixed = winners(table.assign(budget_label="fixed")).splitlines()[2]  # no nominal budget: every policy ranks
    assert "| recency (0.220) | 0.4000 |" in fixed and fixed.endswith("|  |")
