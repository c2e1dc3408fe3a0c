import pytest
import torch

from tsham.heads import HeadConfig, QuantileHead, pinball_loss


def test_head_shapes_prefix_and_sorted_quantiles():
    head = QuantileHead(HeadConfig(d_model=8, max_horizon=30))
    h = torch.randn(5, 8)
    head.train()
    full = head(h, 30)
    assert full.shape == (5, 9, 30)
    torch.testing.assert_close(head(h, 7), full[..., :7])
    head.eval()
    out = head(h, 12)
    assert (out.diff(dim=1) >= 0).all()
    assert head.median_index == 4


def test_pinball_loss_values():
    quantiles = (0.1, 0.5, 0.9)
    target = torch.zeros(1, 2)
    pred = torch.tensor([[[1.0, -1.0], [1.0, -1.0], [1.0, -1.0]]])  # (B=1, Q=3, H=2)
    # y - yq = -1 (step 0) and +1 (step 1); 2 * pinball: q=0.1 -> 1.8, 0.2; q=0.5 -> 1, 1; q=0.9 -> 0.2, 1.8
    assert pinball_loss(pred, target, None, quantiles).item() == pytest.approx((1.8 + 0.2 + 1 + 1 + 0.2 + 1.8) / 6)
    observed = torch.tensor([[1.0, 0.0]])
    assert pinball_loss(pred, target, observed, quantiles).item() == pytest.approx((1.8 + 1 + 0.2) / 3)
    median_only = pinball_loss(pred[:, 1:2], target, None, (0.5,))
    assert median_only.item() == pytest.approx(1.0)  # equals the absolute error


def test_pinball_minimised_by_the_quantiles():
    torch.manual_seed(0)
    y = torch.randn(20000)
    levels = (0.1, 0.5, 0.9)
    best = torch.quantile(y, torch.tensor(levels))
    pred = best.view(1, 3, 1).expand(20000, 3, 1)
    base = pinball_loss(pred, y[:, None], None, levels)
    for shift in (-0.1, 0.1):
        assert pinball_loss(pred + shift, y[:, None], None, levels) > base


def test_bad_input():
    with pytest.raises(ValueError, match="median"):
        HeadConfig(quantiles=(0.1, 0.9))
    with pytest.raises(ValueError, match="ascending"):
        HeadConfig(quantiles=(0.5, 0.1))
    head = QuantileHead(HeadConfig(d_model=8, max_horizon=10))
    with pytest.raises(ValueError, match="horizon must lie in 1..10"):
        head(torch.randn(2, 8), 11)
    with pytest.raises(ValueError, match="horizon must lie"):
        head(torch.randn(2, 8), 0)
    with pytest.raises(ValueError, match="pred must be"):
        pinball_loss(torch.randn(2, 3, 4), torch.randn(2, 5), None, (0.1, 0.5, 0.9))
