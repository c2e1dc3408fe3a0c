"""Where routers put their slots along the context: recency's window and sink, nothing for pure GDN."""

import numpy as np
import pytest
import torch
from tsham.experiments.routing_positions import kept_tokens, position_shares
from tsham.probes.runner import probe_config

from tsham.model import TshamModel


def test_kept_tokens_under_a_cap_are_the_sinks_and_the_last_cap():
    assert kept_tokens([0, 3, 5, 7, 9], cap=2, sinks=1) == [0, 7, 9]
    assert kept_tokens([0, 3, 5], cap=2, sinks=1) == [0, 3, 5]  # fits: all of them
    assert kept_tokens([0, 3, 5], cap=None, sinks=0) == [0, 3, 5]


def test_recency_keeps_its_sink_and_last_window():
    torch.manual_seed(0)
    # 200 steps in patches of 4: 50 tokens; a 20% window is the last 10 tokens, plus one sink
    model = TshamModel(probe_config("recency", 0.2, patch_length=4, d_model=16, context_length=200,
                                    bind_channels=False)).eval()
    shares, _ = position_shares(model, torch.randn(3, 200), horizon=8)
    assert shares.shape == (2, 10)
    expected = np.zeros(10)
    expected[0], expected[-2:] = 1 / 11, 5 / 11  # the sink, then tokens 40-49 in the last two tenths
    np.testing.assert_allclose(shares, np.stack([expected, expected]), atol=1e-6)


def test_pure_gdn_routes_nothing_and_too_short_contexts_are_refused():
    model = TshamModel(probe_config("none", 0.0, patch_length=4, d_model=16, context_length=200,
                                    bind_channels=False)).eval()
    shares, kv = position_shares(model, torch.randn(2, 200), horizon=8)
    assert kv == 0 and not shares.any()
    with pytest.raises(ValueError, match="cannot fill 10 bins"):
        position_shares(model, torch.randn(2, 20), horizon=8)


def test_surprise_warmup_moves_the_routed_tokens_out_of_the_start():
    """The warm-up experiment's cell: with the first 8 of 96 MQAR tokens off limits, surprise's slots leave the
    context's first tenth (an untrained model already routes most of them there without it)."""
    from tsham.experiments.surprise_warmup import run_cell

    plain, warm = (run_cell("mqar", "easy", 0.1, w, seed=0, steps=2, batch_size=4, lr=3e-3, n_test=8) for w in (0, 8))
    assert plain["first_tenth"] > 0.3 and warm["first_tenth"] < 0.5 * plain["first_tenth"]
    assert 0 < warm["kv"] < 0.3 and 0 <= warm["capture"] <= 1
