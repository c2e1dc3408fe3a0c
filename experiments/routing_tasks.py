"""Training and scoring one cell of the routing benchmark (:mod:`tsham.experiments.routing_policies`).

Probes go through :mod:`tsham.probes.runner` (validation: recall skill on seeds 20000+; test: the #6 test seeds
10000+). Forecasting cells train on windows of a series pool with the same loop (:func:`train_loop`); their
validation is the pinball loss on held-out windows, their test the task's own protocol.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from tsham.experiments.routing_policies import task_spec
from tsham.probes.generators import PROBES
from tsham.probes.runner import evaluate_probe, probe_config, probe_context_length, train_loop, train_probe_model

from tsham.config import TshamConfig
from tsham.model import TshamModel
from tsham.training import PoolSeries, WindowStream
from tsham.training.validation import split_tails, validation_loss

HELD_OUT_SEEDS = {"val": 987_654, "test": 987_655}  # synthetic series no cell trains on
ROUTING_MAP_SERIES = ("sm_co2", "co2")  # the real series whose routed steps the report draws


def cell_config(cell: dict) -> TshamConfig:
    """The backbone every policy shares (:func:`probe_config`), sized by the cell's recipe."""
    spec = task_spec(cell["task"])
    context = probe_context_length(spec["probe"], spec["level"]) if spec["kind"] == "probe" else spec["context_length"]
    return probe_config(cell["policy"], cell["budget"], patch_length=spec["patch_length"], d_model=cell["d_model"],
                        n_layers=cell["n_layers"], context_length=context)


def train_cell(cell: dict, device: str) -> tuple[TshamModel, list, int]:
    """Trains a cell's model; returns it (eval mode), its loss history ``(step, loss, seconds)`` and the patch
    tokens one training step sees (context plus horizon, all channels of the batch's windows)."""
    spec, config, history = task_spec(cell["task"]), cell_config(cell), []
    if spec["kind"] == "probe":
        model = train_probe_model(spec["probe"], spec["level"], config, cell["steps"], cell["batch_size"], cell["lr"],
                                  seed=cell["seed"], device=device, history=history)
        sample = PROBES[spec["probe"]](1, spec["level"], seed=0)
        steps = sample.context.shape[1] + sample.target.shape[1]
        return model, history, cell["batch_size"] * -(-steps // spec["patch_length"]) * sample.context.shape[2]
    torch.manual_seed(cell["seed"])
    model = TshamModel(config).to(device)
    pool = training_pool(spec, cell)
    stream = iter(WindowStream(pool, spec["context_length"], spec["horizon"], cell["batch_size"], seed=cell["seed"]))

    def step_loss(step: int) -> torch.Tensor:
        return forecast_loss(model, with_flags(next(stream), spec), device)

    train_loop(model, step_loss, cell["steps"], cell["lr"], history=history)
    tokens = -(-(spec["context_length"] + spec["horizon"]) // spec["patch_length"])
    return model, history, cell["batch_size"] * tokens


def with_flags(batch: dict, spec: dict) -> dict:
    """On the flagged task (``synthetic``), every batch gets an event-flag channel, all zero where its layout has
    none, so event and composite routing can run on every batch and every policy sees the same inputs."""
    if spec["test"] != "synthetic" or "event_flags" in batch:
        return batch
    return {**batch, "event_flags": torch.zeros(*batch["past_target"].shape[:2], 1)}


def forecast_loss(model: TshamModel, batch: dict, device: str, aux: bool = True) -> torch.Tensor:
    """The pinball loss of one :class:`WindowStream` batch."""
    b = {k: v.to(device) for k, v in batch.items()}
    out = model(b["past_target"], b["future_target"].shape[1], past_observed_values=b["past_observed_values"],
                past_covariates=b.get("past_covariates"), event_flags=b.get("event_flags"))
    return model.loss(out, b["future_target"], b["future_observed_values"], aux=aux)


def training_pool(spec: dict, cell: dict) -> list[PoolSeries]:
    """ETTh1's LTSF train split (z-scored, one series per channel) for ``ltsf``; else the synthetic pretraining mix
    (``synthetic_series`` series of 4 x context steps) plus the statsmodels series."""
    if spec["test"] == "ltsf":
        from tsham.experiments.ltsf import TRAIN_END, normalised

        return [PoolSeries.from_array(c) for c in normalised(spec["dataset"])[:TRAIN_END].T]
    return list(synthetic_pool(cell["synthetic_series"], 4 * spec["context_length"], 0)) + list(real_pool())


@lru_cache(maxsize=4)
def synthetic_pool(count: int, length: int, seed: int) -> tuple[PoolSeries, ...]:
    """The pretraining mix's synthetic series (cached per worker: every cell of a task draws from the same pool)."""
    from tsham.datasets import synthetic_mix
    from tsham.experiments.pretrain import PRESETS

    weights = PRESETS["gpu-small"]["weights"]
    return tuple(PoolSeries.from_synthetic(s) for s in synthetic_mix(count, length, seed=seed, weights=weights))


@lru_cache(maxsize=1)
def real_pool() -> tuple[PoolSeries, ...]:
    from tsham.experiments.pretrain import wheel_pool

    return tuple(wheel_pool()[0])


def held_out_batches(spec: dict, which: str, windows: int, batch_size: int = 64) -> list[dict]:
    """Fixed windows of synthetic series drawn from a seed no cell trains on (``which``: "val" or "test")."""
    seed = HELD_OUT_SEEDS[which]
    pool = list(synthetic_pool(64, 4 * spec["context_length"], seed))
    stream = iter(WindowStream(pool, spec["context_length"], spec["horizon"], batch_size, seed=seed))
    return [with_flags(next(stream), spec) for _ in range(max(1, -(-windows // batch_size)))]


@torch.no_grad()
def evaluate_cell(model: TshamModel, cell: dict, device: str) -> dict:
    """The cell's validation score (``val``, what the learning rate is chosen on), its test metric (``metric``,
    ``test``, ``higher_is_better``), the realised KV fraction overall and per layer, and for forecasting the
    routing map on a real series."""
    spec = task_spec(cell["task"])
    if spec["kind"] == "probe":
        labels = {"task": cell["task"]}
        val = evaluate_probe(model, spec["probe"], spec["level"], cell["n_val"], 20_000 + cell["seed"], labels, device)
        test = evaluate_probe(model, spec["probe"], spec["level"], cell["n_test"], 10_000 + cell["seed"], labels,
                              device)
        batch = PROBES[spec["probe"]](32, spec["level"], seed=10_000 + cell["seed"])
        from tsham.probes.runner import probe_forward

        layers = realised_per_layer(model, probe_forward(model, batch, device))
        extras = {k: float(test[k].mean()) for k in ("capture_rate", "slot_precision", "needle_attention", "mse")
                  if k in test}
        return {"val": float(val["RS"].mean()), "metric": "recall skill", "test": float(test["RS"].mean()),
                "higher_is_better": True, "kv_realised": float(test["kv_fraction"].mean()), "kv_per_layer": layers,
                **extras, "routing_map": None}
    ltsf = spec["test"] == "ltsf"
    val_batches = ltsf_validation(spec) if ltsf else held_out_batches(spec, "val", cell["n_val"])
    b = {k: v.to(device) for k, v in val_batches[0].items()}
    out = model(b["past_target"], b["future_target"].shape[1], past_observed_values=b["past_observed_values"],
                past_covariates=b.get("past_covariates"), event_flags=b.get("event_flags"))
    layers = realised_per_layer(model, out)
    result = {"val": validation_loss(model, val_batches), "higher_is_better": False, "kv_per_layer": layers,
              "kv_realised": float(np.mean(layers)), "routing_map": routing_map(model, spec, device)}
    if spec["test"] == "synthetic":
        result |= {"metric": "pinball loss", "test": validation_loss(model, held_out_batches(spec, "test",
                                                                                             cell["n_test"]))}
    elif spec["test"] == "ltsf":
        from tsham.experiments.ltsf import normalised, score

        mse, mae = score(model, normalised(spec["dataset"]), spec["horizon"], device)
        result |= {"metric": f"MSE at {spec['horizon']}", "test": mse, "MAE": mae}
    else:
        result |= gift_scores(model, device)
    return result


def realised_per_layer(model: TshamModel, out) -> list[float]:
    """Each layer's realised KV fraction: the slots a stream keeps at the end (under a recency window at most the
    window plus its sinks) over its tokens, averaged over streams and heads."""
    from tsham.probes.diagnostics import resident_slots

    tokens = out.layers[0].mask.shape[1]
    return [float(s.float().mean()) / tokens for s in resident_slots(model, out)]


def ltsf_validation(spec: dict) -> list[dict]:
    """Windows whose forecasts lie in the LTSF validation rows (their look-back reaches into the train rows)."""
    from tsham.experiments.ltsf import TEST_START, TRAIN_END, normalised

    pool = [PoolSeries.from_array(c) for c in normalised(spec["dataset"])[:TEST_START].T]
    return split_tails(pool, TEST_START - TRAIN_END, spec["context_length"], spec["horizon"], 512, 64, seed=0)[1]


def gift_scores(model: TshamModel, device: str) -> dict:
    """The eight offline GIFT-Eval configurations: geo-mean MASE and CRPS ratios to seasonal naive."""
    from tsham.evaluation import scoreboard
    from tsham.forecasting.gluonts_adapter import TshamPredictor
    from tsham.forecasting.pipeline import TshamPipeline

    pipe = TshamPipeline(model, device)
    board = scoreboard(lambda h: TshamPredictor(pipe, h))
    geo = board[board["dataset"] == "geo-mean"].iloc[0]
    return {"metric": "geo-mean MASE ratio", "test": float(geo["MASE_ratio"]), "CRPS_ratio": float(geo["CRPS_ratio"])}


def routing_map(model: TshamModel, spec: dict, device: str) -> dict:
    """Which context patch tokens each layer holds at the end (routed by any head; under a cap or recency window
    only the sinks and the last ``cap``) on the last context of a real series."""
    from tsham.datasets import load

    name, column = ROUTING_MAP_SERIES
    values = load(name)[column].to_numpy(np.float32)[-spec["context_length"]:]
    x = torch.from_numpy(values).to(device)[None, :, None]
    flags = with_flags({"past_target": x}, spec).get("event_flags")  # a real series has no events
    out = model(x, spec["patch_length"], event_flags=None if flags is None else flags.to(device))
    kept = []
    for block, d in zip(model.stack.blocks, out.layers, strict=True):
        routed = torch.nonzero(d.mask[0, :out.num_context_patches].any(-1)).flatten().tolist()
        cap, sinks = block.mixer.router.cap, block.mixer.router.sinks
        if cap is not None and len(routed) > cap + sinks:  # what a stream still holds: sinks and the last cap
            routed = routed[:sinks] + routed[-cap:]
        kept.append(routed)
    return {"series": f"{name}:{column}", "values": values.tolist(), "patch_length": spec["patch_length"],
            "kept": kept}
