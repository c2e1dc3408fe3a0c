"""Instance scaling and training windows."""

import math

import numpy as np
import pytest
import torch

from tsham.series import InstanceScaler, observed_mask, sample_windows


def test_scaler_round_trip_and_statistics():
    x = torch.randn(3, 50, 4) * torch.tensor([1.0, 10.0, 0.1, 5.0]) + torch.tensor([0.0, 100.0, -3.0, 7.0])
    scaled, loc, scale = InstanceScaler()(x)
    assert scaled.dtype == torch.float32 and loc.shape == (3, 1, 4) and scale.shape == (3, 1, 4)
    torch.testing.assert_close(scaled.mean(1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(scaled.pow(2).mean(1), torch.ones(3, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(InstanceScaler.inverse(scaled, loc, scale), x, atol=1e-4, rtol=1e-5)


def test_scaler_uses_observed_values_only():
    x = torch.randn(2, 40, 1)
    x_missing = x.clone()
    x_missing[:, ::3] = math.nan
    scaled, loc, scale = InstanceScaler()(x_missing)
    keep = ~torch.isnan(x_missing)
    expected_loc = torch.stack([x[b][keep[b]].mean() for b in range(2)])
    torch.testing.assert_close(loc.flatten(), expected_loc)
    assert (scaled[~keep] == 0).all() and torch.isfinite(scaled).all()


def test_scaler_constant_and_empty_channels():
    x = torch.full((1, 20, 3), 5.0)
    x[..., 1] = 0.0
    x[..., 2] = math.nan
    scaled, loc, scale = InstanceScaler()(x)
    assert (scaled == 0).all()
    assert loc.flatten().tolist() == [5.0, 0.0, 0.0] and scale.flatten().tolist() == [5.0, 1.0, 1.0]
    torch.testing.assert_close(InstanceScaler.inverse(scaled, loc, scale)[..., :2], x[..., :2])


def test_scaler_is_relative_for_tiny_values_and_does_not_overflow_for_huge_ones():
    x = torch.randn(1, 200, 3, generator=torch.Generator().manual_seed(0))
    x[..., 0] = 2e-6 + 1e-6 * x[..., 0]  # tiny values that vary: not a constant (an absolute floor said it was)
    x[..., 1] = 1e20 * x[..., 1]  # float32 squares overflow here
    x[..., 2] = 0.25  # a constant below 1 keeps its own level as scale
    scaled, loc, scale = InstanceScaler()(x)
    assert torch.isfinite(scaled).all() and torch.isfinite(scale).all()
    torch.testing.assert_close(scaled[..., :2].pow(2).mean(1), torch.ones(1, 2), atol=1e-4, rtol=0)
    assert scale[0, 0, 2].item() == 0.25 and (scaled[..., 2] == 0).all()
    torch.testing.assert_close(InstanceScaler.inverse(scaled, loc, scale), x, atol=0, rtol=1e-4)


def test_scaler_bad_input():
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        InstanceScaler()(torch.randn(10, 3))
    with pytest.raises(ValueError, match="inf"):
        observed_mask(torch.tensor([1.0, math.inf]))
    with pytest.raises(ValueError, match="does not match"):
        InstanceScaler()(torch.randn(1, 5, 2), torch.ones(1, 5, 1))


def test_windows_fields_padding_and_determinism():
    rng = np.random.default_rng(0)
    short = np.arange(10, dtype=np.float32)
    batch = sample_windows([short], context_length=16, horizon=3, num_windows=50, rng=rng)
    assert batch["past_target"].shape == (50, 16, 1) and batch["future_target"].shape == (50, 3, 1)
    # the context is left-padded as missing, the horizon is always fully observed here
    assert (batch["past_observed_values"][:, :6] == 0).all() and (batch["future_observed_values"] == 1).all()
    for n in range(50):  # the future continues the past: consecutive integers
        last = batch["past_target"][n, -1, 0]
        assert batch["future_target"][n, :, 0].tolist() == [last + 1, last + 2, last + 3]
    again = sample_windows([short], 16, 3, 50, np.random.default_rng(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_windows_in_the_tail_forecast_only_held_out_steps():
    series = [np.arange(100, dtype=np.float32), np.arange(40, dtype=np.float32)]
    batch = sample_windows(series, context_length=16, horizon=5, num_windows=200, rng=np.random.default_rng(1),
                           tail=12)
    first = batch["future_target"][:, 0, 0]
    # every future starts inside its series' last 12 steps and ends by the series' end
    assert set(first.tolist()) <= set(range(88, 96)) | set(range(28, 36)) and len(set(first.tolist())) > 8
    assert (batch["past_observed_values"][:, -1] == 1).all()  # the past reaches back before the tail
    with pytest.raises(ValueError, match="shorter than the horizon"):
        sample_windows(series, 16, 5, 1, np.random.default_rng(0), tail=4)


def test_windows_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="long enough"):
        sample_windows([np.ones(3)], 8, 5, 1, rng)
    with pytest.raises(ValueError, match="same number of channels"):
        sample_windows([np.ones((20, 1)), np.ones((20, 2))], 8, 2, 4, rng)
    with pytest.raises(ValueError, match="positive"):
        sample_windows([np.ones(20)], 8, 0, 1, rng)


def test_flat_where_constant_takes_a_spread_under_the_scalers_floor_for_constant():
    from tsham.series import flat_where_constant, observed_range

    history = torch.tensor([[1e6, 1e6, 1e6 + 1], [1000.0, 1000.5, 1001.0], [5.0, 5.0, 5.0]]).T[None]  # (1, 3, 3)
    forecast = torch.randn(1, 3, 9, 4)
    flat = flat_where_constant(forecast, *observed_range(history))
    assert (flat[0, 0] == 1e6 + 0.5).all() and (flat[0, 2] == 5.0).all()
    torch.testing.assert_close(flat[0, 1], forecast[0, 1])  # a spread of 1e-3 of the level is a series
