"""A few Lightning steps on synthetic data: export, load, forecast, resume."""

import json
import math

import numpy as np
import pytest
import torch
from tsham.datasets import synthetic_mix

from tsham.checkpoint import load_checkpoint
from tsham.config import TshamConfig
from tsham.model import TshamModel
from tsham.training import PoolSeries, TrainConfig, WindowStream, train


def tiny_config():
    cfg = TshamConfig.small(d_model=32, patch_length=8, n_layers=1, num_heads=2, head_dim=16,
                            router="surprise", router_kwargs={"target": 0.25})
    cfg.context_length = 48
    return cfg


def test_window_stream_layouts():
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(12, 200, seed=1)]
    stream = iter(WindowStream(pool, context_length=32, horizon=8, batch_size=4))
    for _ in range(10):
        batch = next(stream)
        ct = batch["past_target"].shape[-1]
        assert batch["past_target"].shape == (4, 32, ct) and batch["future_target"].shape == (4, 8, ct)
        if "event_flags" in batch:
            assert batch["event_flags"].shape[:2] == (4, 32)


def test_train_export_load_forecast_resume(tmp_path):
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(16, 160, seed=0)]
    pool.append(PoolSeries.from_array(np.sin(np.arange(160) / 3)))
    run = TrainConfig(steps=6, batch_size=4, horizon=8, warmup_steps=2, kv_warmup_steps=4, log_every=1)
    model = train(tiny_config(), run, pool, tmp_path, progress=False)
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.stack.blocks[0].mixer.router.target == 0.25  # the warm-up did not leak into the export
    x = torch.randn(2, 40, 1)
    torch.testing.assert_close(loaded(x, 8).quantiles, model(x, 8).quantiles)
    assert (tmp_path / "lightning" / "last.ckpt").is_file() and (tmp_path / "model" / "train_config.json").is_file()
    longer = TrainConfig(steps=8, batch_size=4, horizon=8, warmup_steps=2, log_every=1)
    train(tiny_config(), longer, pool, tmp_path, resume=True, progress=False)
    import pandas as pd

    history = pd.read_csv(tmp_path / "history.csv")  # the resumed run's rows go on from the first run's
    assert history["step"].is_monotonic_increasing and history["step"].iloc[-1] == 8
    assert history["tokens"].is_monotonic_increasing and history["seconds"].is_monotonic_increasing
    with pytest.raises(ValueError, match="its schedule peaks at 0.001, which a resumed run keeps; resume with --lr"):
        train(tiny_config(), TrainConfig(steps=10, batch_size=4, horizon=8, lr=5e-2), pool, tmp_path, resume=True,
              progress=False)
    wider = tiny_config()
    wider.ham.d_model = wider.patch.d_model = wider.head.d_model = 48
    with pytest.raises(ValueError, match="written by a run with another model"):
        train(wider, longer, pool, tmp_path, resume=True, progress=False)
    ckpt = tmp_path / "lightning" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or not a Lightning checkpoint"):
        train(tiny_config(), longer, pool, tmp_path, resume=True, progress=False)


def test_resume_without_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny_config(), TrainConfig(steps=1), [PoolSeries.from_array(np.ones(100))], tmp_path, resume=True)


def test_budget_agnostic_training_with_jitter_and_horizons(tmp_path):
    """Per-batch KV budgets, horizons and start-aligned jitter train; the export is calibrated at the target."""
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(16, 200, seed=0)]
    run = TrainConfig(steps=4, batch_size=4, horizon=16, horizons=(8, 16), kv_budgets=(0.0, 0.5, 1.0),
                      align_jitter=True, warmup_steps=1, log_every=1)
    config = tiny_config()
    config.align = "start"
    model = train(config, run, pool, tmp_path, progress=False)
    router = model.stack.blocks[0].mixer.router
    assert router.target == 0.25 and np.isfinite(float(router.tau))
    history = np.loadtxt(tmp_path / "history.csv", delimiter=",", skiprows=1, ndmin=2)
    assert history[-1, 0] == 4 and set(history[:, 2]) <= {0.0, 0.5, 1.0}  # each step routed one drawn budget
    assert np.all(np.diff(history[:, 3]) > 0)  # patch tokens seen grow


def test_accumulation_shares_budget_and_jitter_within_an_optimizer_step(tmp_path):
    """accumulate=2: two micro-batches per optimizer step, both routed at one drawn budget with one jitter."""
    import lightning as L

    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
            seen.append((trainer.global_step, task.budget_routers[0].target, task.drop))

    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(16, 200, seed=0)]
    run = TrainConfig(steps=5, batch_size=2, horizon=8, kv_budgets=(0.0, 0.25, 0.5, 1.0), align_jitter=True,
                      warmup_steps=1, log_every=1, accumulate=2)
    config = tiny_config()
    config.align = "start"
    train(config, run, pool, tmp_path, progress=False, callbacks=(Record(),))
    assert len(seen) == 10  # 5 optimizer steps x 2 micro-batches
    firsts, seconds = seen[0::2], seen[1::2]
    assert [s[1:] for s in firsts] == [s[1:] for s in seconds]  # budget and jitter shared within a step
    assert len({s[1:] for s in firsts}) > 1  # ... and drawn again per step
    assert np.loadtxt(tmp_path / "history.csv", delimiter=",", skiprows=1, ndmin=2)[-1, 0] == 5
    with pytest.raises(ValueError, match="accumulate"):
        train(config, TrainConfig(steps=1, accumulate=0), pool, tmp_path / "bad", progress=False)


def test_validation_exports_the_best_weights_and_stops_on_patience(tmp_path):
    """A fine-tune that only makes things worse (a huge learning rate) exports its starting weights."""
    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    start = train(tiny_config(), TrainConfig(steps=4, batch_size=4, horizon=8, warmup_steps=1), pool,
                  tmp_path / "start", progress=False)
    ruin = TrainConfig(steps=12, batch_size=4, horizon=8, warmup_steps=1, lr=30.0, validation_steps=40,
                       val_every=2, val_windows=16, patience=2)
    tuned = train(tiny_config(), ruin, pool, tmp_path / "ruin", progress=False, init_from=start)
    summary = json.loads((tmp_path / "ruin" / "model" / "validation.json").read_text())
    rows = np.loadtxt(tmp_path / "ruin" / "validation.csv", delimiter=",", skiprows=1, ndmin=2)
    # lr 30 may take a later loss to inf or NaN: either is no improvement (NaN > x is False, so compare with <=)
    assert rows[0, 0] == 0 and summary["best_step"] == 0 and not (rows[1:, 1] <= rows[0, 1]).any()
    assert rows[-1, 0] < 12  # patience stopped it: 2 validations without improvement
    assert summary["initial_val_loss"] == summary["best_val_loss"] == pytest.approx(rows[0, 1], abs=1e-5)
    for k, v in start.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[k], v)
    with pytest.raises(ValueError, match="leaves no series"):
        train(tiny_config(), TrainConfig(steps=1, horizon=8, validation_steps=295), pool, tmp_path / "x",
              progress=False)


# a validation batch for callbacks whose scores a test sets itself (only what BestOnValidation reads of it)
FAKE_BATCH = {"future_target": torch.zeros(1, 2, 1), "future_observed_values": torch.ones(1, 2, 1)}


def test_validation_never_keeps_nan_and_says_when_nothing_was_finite(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tsham.training import validation

    scores = iter([float("nan"), 0.5, float("nan"), 0.7])
    monkeypatch.setattr(validation, "validation_loss", lambda model, batches, metric: next(scores))
    calibrated = []
    callback = validation.BestOnValidation([FAKE_BATCH], every=1, patience=0, path=tmp_path / "v.csv",
                                           calibrate=lambda model, batch: calibrated.append(batch))
    task = SimpleNamespace(model=TshamModel(tiny_config()))
    trainer = SimpleNamespace(global_step=0, is_global_zero=True, should_stop=False,
                              strategy=SimpleNamespace(reduce_boolean_decision=lambda stop, all: stop))
    callback.on_train_start(trainer, task)
    for step in (1, 2, 3):
        trainer.global_step = step
        callback._validate(trainer, task)
    assert callback.best_step == 1 and callback.best_loss == 0.5 and len(calibrated) == 4
    assert np.isnan(callback.initial_loss)  # the starting weights' score is reported as it was
    empty = validation.BestOnValidation([FAKE_BATCH], every=1, patience=0, path=tmp_path / "w.csv")
    monkeypatch.setattr(validation, "validation_loss", lambda model, batches, metric: float("nan"))
    trainer.global_step = 0
    empty.on_train_start(trainer, task)
    with pytest.raises(ValueError, match="no finite validation loss"):
        empty.on_train_end(trainer, task)


def test_validation_runs_under_budget_agnostic_training(tmp_path, monkeypatch):
    import importlib

    train_module = importlib.import_module("tsham.training.train")  # the module (the package exports train())
    calibrations = []
    real = train_module._export_routing
    monkeypatch.setattr(train_module, "_export_routing",
                        lambda model, batch, targets: calibrations.append(list(targets)) or real(model, batch, targets))
    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(8, 300, seed=0)]
    run = TrainConfig(steps=4, batch_size=4, horizon=8, kv_budgets=(0.0, 1.0), warmup_steps=1, validation_steps=40,
                      val_every=1, val_windows=8)
    model = train(tiny_config(), run, pool, tmp_path, progress=False)
    rows = np.loadtxt(tmp_path / "validation.csv", delimiter=",", skiprows=1, ndmin=2)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4] and np.isfinite(rows[:, 1]).all()
    assert model.stack.blocks[0].mixer.router.target == 0.25  # exported at its own target, not a drawn budget
    # every validation (5) and the export ran at the export target, not at the last drawn budget
    assert calibrations == [[0.25]] * 6
    from tsham.training.validation import split_tails, validation_loss

    config = tiny_config()
    _, batches = split_tails(pool, 40, config.context_length, 8, 8, 4, seed=run.seed + 7919)
    best = json.loads((tmp_path / "model" / "validation.json").read_text())["best_val_loss"]
    # the export is the validated model: calibrated on the validation batch, not recalibrated on a training one
    assert validation_loss(model, batches) == pytest.approx(best, rel=1e-5)


def test_validation_shares_windows_among_horizons_and_scores_the_medians_mse(tmp_path):
    """Several training horizons each get whole validation batches, the longest first; "mse" is the median's
    squared error over the observed future values, in the series' units; the run exports the step it picked."""
    from tsham.training.validation import split_tails, validation_loss

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k) * (1 + k)) for k in range(3)]
    _, batches = split_tails(pool, 40, 48, (4, 12), windows=16, batch_size=4, seed=3)
    assert [b["future_target"].shape[1] for b in batches] == [12, 12, 4, 4]
    _, alone = split_tails(pool, 40, 48, 12, windows=8, batch_size=4, seed=3)  # one horizon: the seed's own stream
    stream = iter(WindowStream(pool, 48, 12, 4, seed=3, tail=40))
    for got in alone:
        torch.testing.assert_close(got["future_target"], next(stream)["future_target"])

    model = TshamModel(tiny_config()).eval()
    batches[0]["future_target"][0, :2] = 1e6  # a value the mask hides (missing steps are stored as 0, not NaN)
    batches[0]["future_observed_values"][0, :2] = 0.0
    batches[3]["future_observed_values"][:] = 0.0  # nothing observed: the batch is left out, not counted as 0
    errors, weights = [], []
    with torch.no_grad():
        for b in batches[:3]:
            median = model(b["past_target"], b["future_target"].shape[1],
                           past_observed_values=b["past_observed_values"]).median.permute(0, 2, 1)  # [B, H, C]
            seen = b["future_observed_values"].bool()
            errors.append(float((median - b["future_target"])[seen].square().mean()))
            weights.append(len(median))
    mse = validation_loss(model, batches, metric="mse")
    assert mse == pytest.approx(np.average(errors, weights=weights), rel=1e-5) and mse < 1e3
    with pytest.raises(ValueError, match="validation metric"):
        validation_loss(model, batches, metric="mae")

    run = TrainConfig(steps=4, batch_size=4, horizon=12, horizons=(4, 12), warmup_steps=1, validation_steps=40,
                      val_every=2, val_windows=16, val_metric="mse")
    tuned = train(tiny_config(), run, pool, tmp_path, progress=False)
    _, batches = split_tails(pool, 40, 48, (4, 12), 16, 4, seed=run.seed + 7919)
    summary = json.loads((tmp_path / "model" / "validation.json").read_text())
    assert summary["metric"] == "mse"
    assert validation_loss(tuned, batches, metric="mse") == pytest.approx(summary["best_val_loss"], rel=1e-5)
    assert validation_loss(tuned, batches) != pytest.approx(summary["best_val_loss"], rel=1e-3)  # not the pinball


def test_validation_draws_no_more_windows_than_the_tails_hold():
    """Short tails hold few distinct windows: validation scores about that many, not --val-windows' 512 (which
    made a tiny CPU fine-tune take minutes per validation); long tails still get the windows asked for."""
    from tsham.training.validation import split_tails

    short = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    _, batches = split_tails(short, 24, 48, 12, windows=512, batch_size=4, seed=0)
    assert len(batches) == math.ceil(3 * (24 - 12 + 1) / 4)  # 13 cut points in each of 3 tails, whole batches
    _, both = split_tails(short, 24, 48, (4, 12), windows=512, batch_size=4, seed=0)
    assert [b["future_target"].shape[1] for b in both].count(4) == math.ceil(3 * (24 - 4 + 1) / 4)
    long = [PoolSeries.from_array(np.sin(np.arange(3000) / 4))]
    _, asked = split_tails(long, 1000, 48, 12, windows=64, batch_size=4, seed=0)
    assert len(asked) == 64 // 4


def test_a_resume_must_validate_as_the_run_did(tmp_path):
    """A best score of one metric (or of other windows) is never compared with scores of another."""
    from tsham.training.validation import BestOnValidation, split_tails

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    _, batches = split_tails(pool, 40, 48, (4, 12), windows=16, batch_size=4, seed=0)
    saved = BestOnValidation(batches, 1, 0, tmp_path / "v.csv").state_dict()
    BestOnValidation(batches, 1, 0, tmp_path / "v.csv").load_state_dict(saved)  # the same: resumes
    with pytest.raises(ValueError, match="validated by pinball.*would validate by mse"):
        BestOnValidation(batches, 1, 0, tmp_path / "v.csv", metric="mse").load_state_dict(saved)
    _, other = split_tails(pool, 60, 48, (4, 12), windows=16, batch_size=4, seed=0)  # --validation-steps changed
    with pytest.raises(ValueError, match="could not be compared"):
        BestOnValidation(other, 1, 0, tmp_path / "v.csv").load_state_dict(saved)
    old = {k: v for k, v in saved.items() if k not in ("metric", "scored")}  # a checkpoint from before: pinball
    BestOnValidation(other, 1, 0, tmp_path / "v.csv").load_state_dict(old)
    with pytest.raises(ValueError, match="would validate by mse"):
        BestOnValidation(other, 1, 0, tmp_path / "v.csv", metric="mse").load_state_dict(old)
    with pytest.raises(ValueError, match="val_metric"):
        TrainConfig(val_metric="MSE")  # a typo fails where it is written, before a run clears its folder


def test_window_stream_draws_horizons_per_batch():
    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 5))]
    stream = iter(WindowStream(pool, context_length=32, horizon=(4, 12), batch_size=2))
    assert {next(stream)["future_target"].shape[1] for _ in range(30)} == {4, 12}
    with pytest.raises(ValueError, match="horizons"):
        WindowStream(pool, 32, (), 2)


def test_fsdp_needs_a_gpu_and_other_strategies_pass_through():
    from tsham.training import make_strategy

    assert make_strategy("ddp") == "ddp" and make_strategy("auto") == "auto"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fsdp.*CUDA"):
            make_strategy("fsdp")


def test_fsdp_strategy_shards_ham_blocks_and_keeps_buffers_in_fp32():
    from lightning.pytorch.strategies import FSDPStrategy

    from tsham.ham.block import HamBlock
    from tsham.training.train import fsdp_strategy

    strategy = fsdp_strategy()
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.mixed_precision_config.buffer_dtype == torch.float32  # router thresholds stay exact
    assert HamBlock in strategy.kwargs["auto_wrap_policy"]._module_classes
    assert strategy.kwargs["use_orig_params"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fsdp_on_one_gpu_exports_the_trained_model(tmp_path):
    import lightning as L

    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(16, 160, seed=0)]
    run = TrainConfig(steps=4, batch_size=4, horizon=8, warmup_steps=1, log_every=1)
    L.seed_everything(run.seed, verbose=False)
    initial = TshamModel(tiny_config())  # train() seeds the same way before building its model
    model = train(tiny_config(), run, pool, tmp_path, progress=False, devices=1, strategy="fsdp")
    loaded = load_checkpoint(tmp_path / "model")
    x = torch.randn(2, 40, 1)
    torch.testing.assert_close(loaded(x, 8).quantiles, model(x, 8).quantiles)
    before, after = initial.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the export holds the trained weights


def test_a_fresh_run_replaces_the_old_state_and_a_resumed_one_draws_new_windows(tmp_path, monkeypatch):
    import importlib

    training = importlib.import_module("tsham.training.train")  # the module (the package exports the function)
    seeds = []
    real = training.WindowStream

    def spy(*args, **kwargs):
        seeds.append(args[4] if len(args) > 4 else kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "WindowStream", spy)
    pool = [PoolSeries.from_array(np.sin(np.arange(200) / 3))]
    run = TrainConfig(steps=2, batch_size=2, horizon=8, warmup_steps=1, log_every=1)
    train(tiny_config(), run, pool, tmp_path, progress=False)
    train(tiny_config(), run, pool, tmp_path, progress=False)  # again, fresh, into the same folder
    assert sorted(p.name for p in (tmp_path / "lightning").glob("last*.ckpt")) == ["last.ckpt"]
    train(tiny_config(), TrainConfig(steps=4, batch_size=2, horizon=8, warmup_steps=1, log_every=1), pool, tmp_path,
          resume=True, progress=False)
    assert seeds[0] == seeds[1] == 0 and seeds[2] != 0  # resumed at step 2: not the first steps' windows again


def test_training_refuses_inf_and_never_exports_non_finite_weights(tmp_path):
    with pytest.raises(ValueError, match="series 1 of the pool contains inf"):
        WindowStream([PoolSeries.from_array(np.ones(100)), PoolSeries.from_array(np.r_[np.ones(99), np.inf])],
                     48, 8, 2)
    with pytest.raises(ValueError, match="no series of the pool has an observed target value"):
        WindowStream([PoolSeries.from_array(np.full(100, np.nan)) for _ in range(2)], 48, 8, 2)
    pool = [PoolSeries.from_array(np.sin(np.arange(200) / 3) * 1e3)]
    config = tiny_config()
    config.ham.check_inputs = False  # as on the GPU: the NaN reaches the weights instead of stopping the forward
    with pytest.raises(ValueError, match="training diverged"):
        train(config, TrainConfig(steps=3, batch_size=2, horizon=8, warmup_steps=1, lr=1e30), pool, tmp_path,
              progress=False)
    assert not (tmp_path / "model").exists()


def test_a_seasonal_prior_starts_fresh_on_weights_without_one(tmp_path):
    """Continued pretraining may add the seasonal prior to a model that had none; every other weight must fit."""
    from tsham.heads import PriorConfig

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    start = train(tiny_config(), TrainConfig(steps=2, batch_size=4, horizon=8, warmup_steps=1), pool,
                  tmp_path / "start", progress=False)
    config = tiny_config()
    config.prior = PriorConfig(lags=(1, 12), window=24)
    tuned = train(config, TrainConfig(steps=2, batch_size=4, horizon=8, warmup_steps=1), pool, tmp_path / "prior",
                  progress=False, init_from=start)
    assert tuned.prior is not None and load_checkpoint(tmp_path / "prior" / "model").prior is not None
    wider = TshamConfig.small(d_model=48, patch_length=8, n_layers=1, num_heads=2, head_dim=16)
    with pytest.raises(RuntimeError, match="size mismatch"):
        train(wider, TrainConfig(steps=1, batch_size=4, horizon=8), pool, tmp_path / "x", progress=False,
              init_from=start)
    deeper = TshamConfig.small(d_model=32, patch_length=8, n_layers=2, num_heads=2, head_dim=16)
    with pytest.raises(ValueError, match="init_from does not fit"):
        train(deeper, TrainConfig(steps=1, batch_size=4, horizon=8), pool, tmp_path / "y", progress=False,
              init_from=start)


def test_averaged_candidates_join_a_prior_that_keeps_what_it_learned(tmp_path):
    """Continued pretraining may offer a trained prior more candidates (PriorConfig.means): the learned scores of
    the lags it had carry over (here with lr 0, so they must come back exactly), the new rows start at zero."""
    from tsham.heads import PriorConfig

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    config = tiny_config()
    config.prior = PriorConfig(lags=(1, 12), window=24)
    start = train(config, TrainConfig(steps=3, batch_size=4, horizon=8, warmup_steps=1, lr=0.1), pool,
                  tmp_path / "start", progress=False)
    assert start.prior.score.weight.abs().sum() > 0  # it learned something to keep
    grown = tiny_config()
    grown.prior = PriorConfig(lags=(1, 12), means=((12, 2),), window=24)
    frozen = TrainConfig(steps=1, batch_size=4, horizon=8, warmup_steps=1, lr=0.0, weight_decay=0.0)
    tuned = train(grown, frozen, pool, tmp_path / "grown", progress=False, init_from=start)
    torch.testing.assert_close(tuned.prior.score.weight[[0, 1, 3]], start.prior.score.weight)
    assert tuned.prior.score.weight[2].abs().sum() == 0 and tuned.prior.score.bias[2] == 0
    assert load_checkpoint(tmp_path / "grown" / "model").config.prior.means == ((12, 2),)


def test_resuming_a_run_without_the_prior_says_how(tmp_path):
    from tsham.heads import PriorConfig

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    run = TrainConfig(steps=2, batch_size=4, horizon=8, warmup_steps=1)
    train(tiny_config(), run, pool, tmp_path, progress=False)
    config = tiny_config()
    config.prior = PriorConfig(lags=(1, 12), window=24)
    with pytest.raises(ValueError, match="no seasonal prior: resume with `--prior-lags` and no lags"):
        train(config, TrainConfig(steps=4, batch_size=4, horizon=8, warmup_steps=1), pool, tmp_path, resume=True,
              progress=False)


def test_resuming_with_other_prior_candidates_names_the_candidates(tmp_path):
    from tsham.heads import PriorConfig

    pool = [PoolSeries.from_array(np.sin(np.arange(300) / 4 + k)) for k in range(3)]
    config = tiny_config()
    config.prior = PriorConfig(lags=(1, 12), window=24)
    train(config, TrainConfig(steps=2, batch_size=4, horizon=8, warmup_steps=1), pool, tmp_path, progress=False)
    grown = tiny_config()
    grown.prior = PriorConfig(lags=(1, 12), means=((12, 2),), window=24)  # e.g. `tsham train`'s defaults grew
    with pytest.raises(ValueError, match="other candidates: resume with its `--prior-lags`, .*--context-length"):
        train(grown, TrainConfig(steps=4, batch_size=4, horizon=8, warmup_steps=1), pool, tmp_path, resume=True,
              progress=False)
