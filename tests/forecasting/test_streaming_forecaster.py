"""StreamingForecaster: equal to the batch forecast on the same history at every step, resumable, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsham.config import TshamConfig
from tsham.forecasting import StreamingForecaster
from tsham.heads import PriorConfig
from tsham.model import TshamModel
from tsham.series import flat_where_constant, observed_range

S, H, WARMUP = 3, 10, 9


def tiny_model(channel_independent: bool, cap: int | None = None, prior: bool = False) -> TshamModel:
    torch.manual_seed(0)
    kwargs = {"threshold": 0.3} if cap is None else {"threshold": 0.3, "cap": cap, "sinks": 1}
    config = TshamConfig.small(d_model=32, patch_length=4, n_layers=2, num_heads=2, head_dim=16, router="surprise",
                               router_kwargs=kwargs)
    config.patch.channel_independent = channel_independent
    if prior:  # a window shorter than the stream, so the stream's history is cut
        config.prior = PriorConfig(lags=(1, 3, 5), means=((2, 4),), window=8, min_pairs=2, per_step=True,
                                   spread=True)  # span 16: the mean reaches furthest back
    model = TshamModel(config).eval()
    if prior:  # scores that depend on the tokens (they start at zero), per step of a patch too, and a spread
        for layer in (model.prior.score, model.prior.step_score, model.prior.spread_scale):
            torch.nn.init.normal_(layer.weight, std=0.5)
    return model


def data(T: int):
    g = torch.Generator().manual_seed(1)
    target = torch.randn(S, T, 2, generator=g)
    target[0, 5, 1] = float("nan")  # a missing value travels through the stream
    past_cov, future_cov = torch.randn(S, T, 1, generator=g), torch.randn(S, T, 1, generator=g)
    flags = (torch.rand(S, T, 1, generator=g) < 0.2).float()
    return target, past_cov, future_cov, flags


@pytest.mark.parametrize("channel_independent,prior", [(False, False), (True, False), (False, True), (True, True)])
def test_stream_equals_batch_forecast_at_every_update(channel_independent, prior, tmp_path):
    model = tiny_model(channel_independent, prior=prior)
    target, past_cov, future_cov, flags = data(60)
    stream = StreamingForecaster(model, S, 2, 1, 1, 1, warmup=WARMUP)
    t = 0
    for n in [1, 2, 3, 1, 5, 4, 7, 1, 8, 12]:  # single steps, partial and several patches, across the warm-up
        stream.update(target[:, t:t + n], past_cov[:, t:t + n], future_cov[:, t:t + n], flags[:, t:t + n])
        t += n
        for known_flags in (True, False):
            got = stream.forecast(H, future_cov[:, t:t + H], flags[:, t:t + H] if known_flags else None)
            with torch.no_grad():
                ref = model(target[:, :t], H, past_covariates=past_cov[:, :t], future_covariates=future_cov[:, :t + H],
                            event_flags=flags[:, :t + H] if known_flags else flags[:, :t], align="start",
                            scale_steps=min(t, WARMUP)).quantiles
                ref = flat_where_constant(ref, *observed_range(target[:, :t])).numpy()  # after one step: flat
            assert got.shape == (S, 2, len(model.config.head.quantiles), H)
            np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=f"t={t} known_flags={known_flags}")
        resumed = StreamingForecaster.load(stream.save(tmp_path / f"t{t}"), model)
        ahead = future_cov[:, t:t + H]
        np.testing.assert_array_equal(resumed.forecast(H, ahead), stream.forecast(H, ahead))


@pytest.mark.parametrize("router", ["all", "surprise"])
def test_a_stream_that_opens_with_missing_rows_routes_none_of_them_as_the_batch_forward(router, tmp_path):
    torch.manual_seed(0)
    model = TshamModel(TshamConfig.small(d_model=32, patch_length=4, n_layers=2, num_heads=2, head_dim=16,
                                         router=router, router_kwargs={} if router == "all" else {"threshold": 0.3}))
    model.eval()
    target = torch.randn(S, 48, 1)
    target[1, :6], target[2, :14] = float("nan"), float("nan")  # streams that start late: 1.5 and 3.5 patches
    stream, t = StreamingForecaster(model, S, 1, warmup=16), 0
    for n in [3, 9, 5, 7, 8, 16]:
        stream.update(target[:, t:t + n])
        t += n
        if t >= 16:
            with torch.no_grad():
                ref = model(target[:, :t], H, align="start", scale_steps=16).quantiles
            ref = flat_where_constant(ref, *observed_range(target[:, :t])).numpy()
            np.testing.assert_allclose(stream.forecast(H), ref, atol=1e-4, err_msg=f"t={t}")
        stream = StreamingForecaster.load(stream.save(tmp_path / f"t{t}"), model)  # what it has seen is saved too


def test_an_older_state_without_what_it_has_seen_resumes_like_the_batch_forward(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = TshamModel(TshamConfig.small(d_model=32, patch_length=4, n_layers=2, num_heads=2, head_dim=16,
                                         router="all")).eval()
    target = torch.randn(S, 40, 1)
    target[:, :8] = float("nan")  # two all-missing patches, still in the warm-up's rows when saved
    for cut in (10, 24):  # saved in the warm-up, and after it
        stream = StreamingForecaster(model, S, 1, warmup=16)
        stream.update(target[:, :cut])
        folder = stream.save(tmp_path / f"old{cut}")
        tensors = load_file(folder / "stream.safetensors")
        del tensors["seen"]  # as a version before it was recorded wrote the state
        save_file(tensors, folder / "stream.safetensors")
        resumed = StreamingForecaster.load(folder, model)
        resumed.update(target[:, cut:])
        with torch.no_grad():
            ref = model(target, H, align="start", scale_steps=16).quantiles.numpy()
        np.testing.assert_allclose(resumed.forecast(H), ref, atol=1e-4, err_msg=f"saved at {cut}")


def test_state_stays_bounded_with_a_cap():
    model = tiny_model(False, cap=3)
    stream = StreamingForecaster(model, S, 1, warmup=4)
    sizes = []
    for _ in range(100):
        stream.update(torch.randn(S, 4, 1))
        sizes.append(stream.memory_bytes())
    assert max(sizes[10:]) == sizes[10], "the capped stream state kept growing"


def test_resumed_stream_continues_identically(tmp_path):
    model = tiny_model(False)
    target = torch.randn(S, 50, 1)
    a = StreamingForecaster(model, S, 1, warmup=WARMUP)
    a.update(target[:, :23])
    b = StreamingForecaster.load(a.save(tmp_path / "s"), model)
    a.update(target[:, 23:])
    b.update(target[:, 23:])
    np.testing.assert_array_equal(a.forecast(H), b.forecast(H))


def test_a_save_is_swapped_in_whole_and_a_cut_one_resumes_the_previous_state(tmp_path):
    model = tiny_model(False)
    target = torch.randn(S, 40, 1)
    stream = StreamingForecaster(model, S, 1, warmup=WARMUP)
    stream.update(target[:, :20])
    expected = stream.forecast(H)
    stream.save(tmp_path / "s", extra={"mine.json": {"since": 3}})
    stream.update(target[:, 20:])
    stream.save(tmp_path / "s")  # over the first: nothing of the swap is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"] and not (tmp_path / "s" / "mine.json").exists()
    (tmp_path / "s").rename(tmp_path / "s#old")  # a save cut after moving the previous state aside
    assert StreamingForecaster.load(tmp_path / "s", model).steps == 40
    first = StreamingForecaster(model, S, 1, warmup=WARMUP)
    first.update(target[:, :20])
    first.save(tmp_path / "t", extra={"mine.json": {"since": 3}})
    assert (tmp_path / "t" / "mine.json").read_text() == '{"since": 3}'
    np.testing.assert_array_equal(StreamingForecaster.load(tmp_path / "t", model).forecast(H), expected)


def test_bad_input_is_named(tmp_path):
    model = tiny_model(False)
    stream = StreamingForecaster(model, S, 1, num_future_covariates=1, warmup=WARMUP)
    with pytest.raises(ValueError, match="no observation"):
        stream.forecast(H, np.zeros((S, H, 1)))
    with pytest.raises(ValueError, match="target must be"):
        stream.update(np.zeros((S + 1, 1)), future_covariates=np.zeros((S + 1, 1)))
    with pytest.raises(ValueError, match="future_covariates channels"):
        stream.update(np.zeros((S, 1)))
    with pytest.raises(ValueError, match="inf"):
        stream.update(np.full((S, 1), np.inf), future_covariates=np.zeros((S, 1)))
    stream.update(np.zeros((S, 1)), future_covariates=np.zeros((S, 1)))
    with pytest.raises(ValueError, match="pass their next"):
        stream.forecast(H)
    with pytest.raises(ValueError, match="horizon"):
        stream.forecast(0, np.zeros((S, 0, 1)))
    with pytest.raises(FileNotFoundError, match="stream.json"):
        StreamingForecaster.load(tmp_path / "nothing", model)
    other = tiny_model(True)
    with pytest.raises(ValueError, match="another model configuration"):
        StreamingForecaster.load(stream.save(tmp_path / "s"), other)


def test_a_nan_flag_reads_as_no_event_in_the_stream_as_in_the_batch_forward():
    model = tiny_model(False)
    target, flags = torch.randn(1, 30, 1), (torch.rand(1, 30, 1) < 0.2).float()
    flags[0, 17, 0] = float("nan")  # an empty flag cell, as `tsham stream` reads one
    stream = StreamingForecaster(model, 1, 1, num_flags=1, warmup=WARMUP)
    stream.update(target, flags=flags)
    with torch.no_grad():
        ref = model(target, H, event_flags=flags, align="start", scale_steps=WARMUP).quantiles.numpy()
    np.testing.assert_allclose(stream.forecast(H), ref, atol=1e-4)


def test_forecast_refuses_what_the_stream_has_no_channels_for_and_a_state_from_other_weights(tmp_path):
    model = tiny_model(False)
    stream = StreamingForecaster(model, S, 1, warmup=WARMUP)
    stream.update(torch.randn(S, 20, 1))
    with pytest.raises(ValueError, match="future_covariates but the stream was built with none"):
        stream.forecast(H, future_covariates=np.ones((S, H, 1)))
    with pytest.raises(ValueError, match="future_flags but the stream was built with none"):
        stream.forecast(H, future_flags=np.ones((S, H, 1)))
    with pytest.raises(ValueError, match="whole steps"):
        stream.forecast(2.5)
    saved = stream.save(tmp_path / "s")
    torch.manual_seed(1)
    same_config_other_weights = TshamModel(model.config).eval()
    with pytest.raises(ValueError, match="other weights"):
        StreamingForecaster.load(saved, same_config_other_weights)
    (saved / "stream.safetensors").write_bytes((saved / "stream.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        StreamingForecaster.load(saved, model)


def test_a_stream_holding_one_value_is_forecast_flat_and_resumes_so(tmp_path):
    model = tiny_model(False)
    stream = StreamingForecaster(model, 2, 1, warmup=WARMUP)
    stream.update(np.array([[1000.0], [np.nan]]))
    during_warmup = stream.forecast(H)
    assert (during_warmup[0] == 1000.0).all() and not (during_warmup[1] == during_warmup[1, 0, 0, 0]).all()
    values = np.stack([np.full(30, 1000.0), np.sin(np.arange(30.0))])[..., None]
    stream.update(values)
    q = stream.forecast(H)
    assert (q[0] == 1000.0).all() and np.ptp(q[1]) > 0
    resumed = StreamingForecaster.load(stream.save(tmp_path / "s"), model)
    np.testing.assert_array_equal(resumed.forecast(H), q)
    resumed.update(np.array([[1001.0], [0.0]]))
    assert np.ptp(resumed.forecast(H)[0]) > 0


def test_a_state_resumes_with_a_config_built_in_code_and_not_with_another_prior(tmp_path):
    """Tuples in a config built in code come back as lists from the saved JSON: still the same model."""
    torch.manual_seed(0)
    config = TshamConfig.small(d_model=32, patch_length=4, n_layers=2, num_heads=2, head_dim=16, router="surprise",
                               router_kwargs={"target": (0.1, 0.3)})  # one target per layer, as a tuple
    model = TshamModel(config).eval()
    stream = StreamingForecaster(model, S, 1, warmup=WARMUP)
    stream.update(torch.randn(S, 30, 1))
    resumed = StreamingForecaster.load(stream.save(tmp_path / "s"), model)
    np.testing.assert_array_equal(resumed.forecast(H), stream.forecast(H))
    with pytest.raises(ValueError, match="another model configuration"):  # the prior is part of the model
        StreamingForecaster.load(tmp_path / "s", tiny_model(False, prior=True))


def test_a_stream_shares_its_model_and_never_moves_it():
    from tsham.config import TshamConfig
    from tsham.model import TshamModel

    config = TshamConfig.small(d_model=16, patch_length=4, n_layers=1, num_heads=2, head_dim=8)
    model = TshamModel(config)
    assert StreamingForecaster(model).device == torch.device("cpu")  # the model's own device by default
    with pytest.raises(ValueError, match="move the model first"):
        StreamingForecaster(model, device="meta")
    assert next(model.parameters()).device == torch.device("cpu")  # it used to be moved under its pipeline
    stream = StreamingForecaster(model, num_future_covariates=1)
    stream.update(np.ones((1, 1), np.float32), future_covariates=np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="future_covariates contains inf"):
        stream.forecast(2, future_covariates=np.full((1, 2, 1), np.inf))


def test_the_stream_command_delays_an_interrupt_until_the_row_is_applied():
    from tsham.forecasting.stream_cli import _Guard

    guard = _Guard()
    with pytest.raises(KeyboardInterrupt):
        guard.handle(2, None)  # waiting for input: at once
    applied = []
    with pytest.raises(KeyboardInterrupt), guard:
        guard.handle(2, None)  # mid-row: noted, not raised
        applied.append("row")
    assert applied == ["row"] and not guard.busy
