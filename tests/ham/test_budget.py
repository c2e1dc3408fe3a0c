"""KV budgets at inference: calibrated thresholds route the requested fraction; 0 and 1 are exact."""

import math

import pytest
import torch

from tsham.ham import HamConfig, HamStack, budgetable_routers, calibrate_kv_budget


def stack(router="surprise", **kwargs):
    torch.manual_seed(0)
    config = HamConfig(d_model=32, n_layers=2, num_heads=2, head_dim=16, router=router, router_kwargs=kwargs)
    return HamStack(config).eval()


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_calibration_routes_the_fraction_on_every_layer(fraction):
    model, x = stack(target=0.1), torch.randn(4, 64, 32)
    taus = calibrate_kv_budget(model, fraction, lambda: model(x))
    assert len(taus) == 2 and not model.blocks[0].mixer.router.training
    with torch.no_grad():
        _, diags = model(x)
    for d in diags:
        assert abs(float(d.realised) - fraction) <= 0.02
    assert model.blocks[0].mixer.router.target == 0.1  # the training target is untouched


def test_zero_and_one_are_pure_gdn_and_full_attention():
    model, x = stack(target=0.1), torch.randn(2, 40, 32)
    calibrate_kv_budget(model, 0.0, lambda: None)
    with torch.no_grad():
        assert all(float(d.realised) == 0.0 for d in model(x)[1])
    calibrate_kv_budget(model, 1.0, lambda: None)
    assert all(float(r.tau) == -math.inf for r in budgetable_routers(model))
    with torch.no_grad():
        assert all(float(d.realised) == 1.0 for d in model(x)[1])


def test_per_router_fractions_and_bad_input():
    model, x = stack(target=0.1), torch.randn(4, 64, 32)
    calibrate_kv_budget(model, [0.5, 0.0], lambda: model(x))
    with torch.no_grad():
        first, second = model(x)[1]
    assert abs(float(first.realised) - 0.5) <= 0.02 and float(second.realised) == 0.0
    with pytest.raises(ValueError, match="one per router"):
        calibrate_kv_budget(model, [0.5], lambda: model(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibrate_kv_budget(model, 1.5, lambda: model(x))
    with pytest.raises(ValueError, match="no router of this model takes a KV budget"):
        calibrate_kv_budget(stack("all"), 0.1, lambda: None)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
def test_the_quantile_over_valid_tokens_is_the_quantile_of_their_scores_alone(fraction):
    from tsham.ham.routers.base import target_quantile

    scores = torch.randn(3, 29, 2)
    everywhere = torch.ones(3, 29, dtype=torch.bool)
    assert torch.equal(target_quantile(scores, fraction, everywhere), target_quantile(scores, fraction))
    valid = torch.rand(3, 29) < 0.6
    kept = scores[valid]  # (n, H): the valid tokens' scores alone
    assert torch.equal(target_quantile(scores, fraction, valid), target_quantile(kept, fraction))
    none = torch.zeros(3, 29, dtype=torch.bool)  # no valid token: every token's quantile, finite
    assert torch.equal(target_quantile(scores, fraction, none), target_quantile(scores, fraction))


def test_invalid_tokens_are_never_routed_and_the_budget_counts_the_valid_ones():
    model, x = stack(target=0.1), torch.randn(4, 64, 32)
    valid = torch.arange(64) >= torch.tensor([[0], [20], [40], [63]])  # left padding of 0, 20, 40, 63 tokens
    calibrate_kv_budget(model, 0.25, lambda: model(x, valid=valid))
    with torch.no_grad():
        _, diags = model(x, valid=valid)
    for d in diags:
        assert not (d.mask & ~valid[..., None]).any()
        share = d.mask.float().sum() / (valid.sum() * d.mask.shape[-1])
        assert float(d.realised) == pytest.approx(float(share)) and abs(float(d.realised) - 0.25) <= 0.02
    full = stack(router="all")
    with torch.no_grad():
        _, diags = full(x, valid=valid)
    assert all(float(d.realised) == 1.0 and torch.equal(d.mask.any(-1), valid) for d in diags)
