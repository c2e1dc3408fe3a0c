"""The synthetic task's models scored zero-shot on GIFT: with the all-zero flag channel they trained with."""

import math
import os
from pathlib import Path

import pytest
import torch
from tsham.experiments.routing_tasks import ZeroFlags, cell_config, gift_scores

from tsham.model import TshamModel

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def tiny(policy: str = "surprise") -> TshamModel:
    torch.manual_seed(0)
    cell = {"task": "synthetic", "policy": policy, "budget": 0.1, "d_model": 16, "n_layers": 2}
    return TshamModel(cell_config(cell)).eval()


def test_zero_flags_gives_the_flag_channel_the_model_trained_with():
    model, x = tiny(), torch.randn(3, 100)
    with torch.no_grad():
        wrapped = ZeroFlags(model)(x, 32).quantiles
        assert torch.equal(wrapped, model(x, 32, event_flags=torch.zeros(3, 100, 1)).quantiles)
        # the flag channel is a channel of the token: leaving it out would score another input than trained on
        assert not torch.allclose(wrapped, model(x, 32).quantiles)


@pytest.mark.skipif(not (Path(os.environ.get("TSHAM_DATA_DIR", SHARED)) / "m4").is_dir(),
                    reason="no offline data copy (set TSHAM_DATA_DIR)")
def test_gift_scores_of_a_flagged_model(monkeypatch):
    if "TSHAM_DATA_DIR" not in os.environ:
        monkeypatch.setenv("TSHAM_DATA_DIR", str(SHARED))
    scores = gift_scores(ZeroFlags(tiny()), "cpu")
    assert scores["metric"] == "geo-mean MASE ratio"
    assert all(math.isfinite(scores[k]) and scores[k] > 0 for k in ("test", "CRPS_ratio"))
    assert len(scores["kv_per_layer"]) == 2 and 0 < scores["kv_realised"] < 0.5  # surprise at a 10% target
