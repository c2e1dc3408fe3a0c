import torch
from tsham.experiments.surprise_ranking import rank_table
from tsham.probes.generators import PROBES
from tsham.probes.runner import probe_config

from tsham.model import TshamModel


def _model():
    torch.manual_seed(0)
    return TshamModel(probe_config("surprise", 0.1, patch_length=1, d_model=16, n_layers=2, context_length=96)).eval()


def test_every_slot_holds_the_needle_and_its_pairs():
    batch, model = PROBES["mqar"](6, "easy", seed=3), _model()
    rows = rank_table(model, batch, slots=96)  # every context token fits: the needle is always in
    assert len(rows) == 2 * 2 * 3  # layers x scores x head aggregates
    marker = batch.context[:, :, -2] > 0.5  # the kv-marker: 4 pair steps per sequence
    echoes = (marker[:, :-1] & ~marker[:, 1:]).sum(1).mean()  # a pair right after a pair is no echo
    for row in rows:
        assert row["needle_in_top"] == 1.0 and row["needle_slots"] == 1.0 and row["pair_slots"] == 4.0
        assert row["echo_slots"] == 1.0 and abs(row["pair_echo_slots"] - echoes) < 1e-6


def test_one_slot_is_the_top_token_and_ranks_agree():
    batch, model = PROBES["mqar"](6, "easy", seed=3), _model()
    for row in rank_table(model, batch, slots=1):
        assert row["needle_slots"] == row["needle_in_top"]  # one slot: the needle is in it iff it ranks first
        assert row["needle_slots"] <= row["pair_slots"] and row["pair_slots"] + row["pair_echo_slots"] <= 1.0
        assert (row["median_rank"] == 0) == (row["needle_in_top"] >= 0.5)  # torch's median: the lower middle
