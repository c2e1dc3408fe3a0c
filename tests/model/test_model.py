"""TshamModel: shapes, inputs of every kind, causality of the future, loss, checkpoints."""

import json
import math

import pytest
import torch

from tsham.checkpoint import load_checkpoint, save_checkpoint
from tsham.config import TshamConfig
from tsham.model import TshamModel


def tiny(router="surprise", **router_kwargs):
    cfg = TshamConfig.small(d_model=32, patch_length=8, n_layers=2, num_heads=2, head_dim=16, router=router,
                            router_kwargs=router_kwargs)
    return TshamModel(cfg)


def test_shapes_any_channels_and_horizons():
    model = tiny().eval()
    for C, T, H in [(1, 50, 13), (3, 64, 8), (2, 7, 30)]:  # T shorter than a patch, H not a multiple of it
        out = model(torch.randn(2, T, C), horizon=H)
        assert out.quantiles.shape == (2, C, 9, H)
        assert (out.quantiles.diff(dim=2) >= 0).all()  # quantiles do not cross
        assert out.median.shape == (2, C, H) and 0 <= out.kv_fraction.item() <= 1


def test_covariates_flags_missing_values():
    model = tiny("event").eval()
    B, T, H = 2, 40, 12
    target = torch.randn(B, T, 2)
    target[0, 5:9, 1] = math.nan
    out = model(target, H, past_covariates=torch.randn(B, T, 1), future_covariates=torch.randn(B, T + H, 2),
                event_flags=(torch.rand(B, T + H, 1) < 0.1).float())
    assert torch.isfinite(out.quantiles).all() and out.quantiles.shape == (B, 2, 9, H)
    assert out.layers[0].mask.shape[1] == out.num_context_patches + math.ceil(H / 8)


def test_future_covariates_reach_the_forecast_and_past_does_not_leak():
    model = tiny().eval()
    target, fut = torch.randn(1, 32, 1), torch.randn(1, 32 + 16, 1)
    base = model(target, 16, future_covariates=fut).quantiles
    changed = fut.clone()
    changed[:, -8:] += 3.0  # a change in the last future patch only
    moved = model(target, 16, future_covariates=changed).quantiles
    torch.testing.assert_close(moved[..., :8], base[..., :8])  # earlier forecast steps are causal
    assert not torch.allclose(moved[..., 8:], base[..., 8:])


def test_scale_equivariance():
    """Forecasts follow an affine change of the data units (instance scaling)."""
    model = tiny().eval()
    x = torch.randn(2, 48, 1)
    a = model(x, 8).quantiles
    b = model(x * 10 + 5, 8).quantiles
    torch.testing.assert_close(b, a * 10 + 5, rtol=1e-4, atol=1e-3)


def test_loss_trains():
    torch.manual_seed(0)
    model = tiny(target=0.25)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    t = torch.arange(80.0)
    series = torch.sin(2 * math.pi * t / 16)[None, :, None].repeat(8, 1, 1) + 0.05 * torch.randn(8, 80, 1)
    losses = []
    for _ in range(40):
        out = model(series[:, :64], 16)
        loss = model.loss(out, series[:, 64:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_round_trip(tmp_path):
    model = tiny("learned", target=0.1).eval()
    model.stack.blocks[0].mixer.router.tau.fill_(0.37)
    x = torch.randn(2, 40, 2)
    path = save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded(x, 10).quantiles, model(x, 10).quantiles)
    assert loaded.stack.blocks[0].mixer.router.tau.item() == pytest.approx(0.37)
    assert loaded.config == model.config


def test_checkpoint_with_fp16_matrices(tmp_path):
    """Half-size files: matrices in fp16, vectors and router thresholds exact; the loaded model is fp32."""
    from safetensors.torch import load_file

    model = tiny("surprise", target=0.1).eval()
    model.stack.blocks[0].mixer.router.tau.fill_(0.123456789)
    full, half = save_checkpoint(model, tmp_path / "full"), save_checkpoint(model, tmp_path / "half", torch.float16)
    stored = load_file(half / "model.safetensors")
    assert {v.dtype for k, v in stored.items() if v.ndim >= 2} == {torch.float16}
    assert stored["stack.blocks.0.mixer.router.tau"].dtype == torch.float32
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.stack.blocks[0].mixer.router.tau.item() == model.stack.blocks[0].mixer.router.tau.item()
    x = torch.randn(3, 64, 1)
    torch.testing.assert_close(loaded(x, 16).quantiles, model(x, 16).quantiles, rtol=2e-2, atol=2e-2)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "nowhere")
    path = save_checkpoint(tiny(), tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 999
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 999"):
        load_checkpoint(path)
    meta["format_version"] = 1
    meta["config"]["ham"]["d_model"] = 48
    meta["config"]["patch"]["d_model"] = 48
    meta["config"]["head"]["d_model"] = 48
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match its config"):
        load_checkpoint(path)
    meta["config"]["ham"]["colour"] = "blue"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown fields"):
        load_checkpoint(path)


def test_broken_checkpoint_files_are_named(tmp_path):
    path = save_checkpoint(tiny(), tmp_path / "ckpt")
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="model.safetensors is truncated"):
        load_checkpoint(path)
    (path / "model.safetensors").write_bytes(weights)
    meta = json.loads((path / "config.json").read_text())
    text_length = json.loads(json.dumps(meta))
    text_length["config"]["patch"]["patch_length"] = "16"
    for broken, message in (([1, 2], "must hold a JSON object"), ({"format_version": 1}, "no model configuration"),
                            (text_length, "wrong type")):
        (path / "config.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path)


def test_bad_input():
    model = tiny().eval()
    with pytest.raises(ValueError, match="horizon must lie"):
        model(torch.randn(1, 20, 1), 0)
    with pytest.raises(ValueError, match="future_covariates must be"):
        model(torch.randn(1, 20, 1), 5, future_covariates=torch.randn(1, 20, 1))
    with pytest.raises(ValueError, match="event_flags must cover"):
        model(torch.randn(1, 20, 1), 5, event_flags=torch.zeros(1, 7, 1))
    with pytest.raises(ValueError, match="non-overlapping"):
        TshamConfig.small().__class__(patch=TshamConfig.small().patch.__class__(patch_length=16, stride=8))


def test_channel_independent_mode():
    cfg = TshamConfig.small(d_model=32, patch_length=8, n_layers=1, num_heads=2, head_dim=16, router="event")
    cfg.patch.channel_independent = True
    model = TshamModel(cfg).eval()
    target = torch.randn(2, 40, 3)
    out = model(target, 12, past_covariates=torch.randn(2, 40, 2), event_flags=torch.zeros(2, 40, 1))
    assert out.quantiles.shape == (2, 3, 9, 12)
    # channel-independent: a target's forecast does not depend on the other channels
    other = target.clone()
    other[..., 1:] += 5.0
    moved = model(other, 12, past_covariates=torch.randn(2, 40, 2), event_flags=torch.zeros(2, 40, 1)).quantiles
    torch.testing.assert_close(moved[:, 0], out.quantiles[:, 0])



def test_start_alignment_and_frozen_scaling():
    model = tiny().eval()
    P = model.config.patch.patch_length
    x = torch.randn(2, 4 * P, 1)
    with torch.no_grad():  # whole patches: both alignments cut the same patches
        torch.testing.assert_close(model(x, 7, align="start").quantiles, model(x, 7, align="end").quantiles)
        odd = torch.randn(2, 4 * P + 3, 1)
        start, end = model(odd, 7, align="start"), model(odd, 7, align="end")
        assert start.quantiles.shape == end.quantiles.shape == (2, 1, len(model.config.head.quantiles), 7)
        assert not torch.allclose(start.quantiles, end.quantiles)  # a partial last patch opens the forecast
        # scaling on the first steps only: later values do not move loc / scale
        changed = odd.clone()
        changed[:, P:] += 100.0
        a, b = model(odd, 7, align="start", scale_steps=P), model(changed, 7, align="start", scale_steps=P)
        torch.testing.assert_close(a.loc, b.loc)
    with pytest.raises(ValueError, match="align"):
        model(x, 7, align="middle")
    with pytest.raises(ValueError, match="scale_steps"):
        model(x, 7, scale_steps=0)
