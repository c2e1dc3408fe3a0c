"""Training and scoring one cell of the routing benchmark (:mod:`tsham.experiments.routing_policies`).

Probes go through :mod:`tsham.probes.runner` (validation: recall skill on seeds 20000+; test: the #6 test seeds
10000+). Forecasting cells train on windows of a series pool with the same loop (:func:`train_loop`); their
validation is the pinball loss on held-out windows, their test the task's own protocol.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from tsham.experiments.routing_policies import task_spec
from tsham.probes.generators import PROBES
from tsham.probes.runner import (
    TEST_SEED_OFFSET,
    evaluate_probe,
    probe_config,
    probe_context_length,
    train_loop,
    train_probe_model,
    training_batch,
    training_loss,
)

from tsham.config import TshamConfig
from tsham.model import TshamModel
from tsham.training import PoolSeries, WindowStream
from tsham.training.validation import forecast_windows, split_tails, validation_loss

HELD_OUT_SEEDS = {"val": 987_654, "test": 987_655}  # synthetic series no cell trains on
ROUTING_MAP_SERIES = ("sm_co2", "co2")  # the real series whose routed steps the report draws


def cell_config(cell: dict) -> TshamConfig:
    """The backbone every policy shares (:func:`probe_config`), sized by the cell's recipe."""
    spec = task_spec(cell["task"])
    context = probe_context_length(spec["probe"], spec["level"]) if spec["kind"] == "probe" else spec["context_length"]
    # forecasting cells keep the plain encoder: their sweep ran with it on the GPU, and their series are univariate
    # or loosely coupled; the probes need the channel binding (probe_config)
    return probe_config(cell["policy"], cell["budget"], patch_length=spec["patch_length"], d_model=cell["d_model"],
                        n_layers=cell["n_layers"], context_length=context, bind_channels=spec["kind"] == "probe",
                        kv_rope_base=spec.get("kv_rope_base", 0.0))


def train_cell(cell: dict, device: str, cuda_graph: bool = False) -> tuple[TshamModel, list, float]:
    """Trains a cell's model (``cuda_graph``: probe cells replay their step as a CUDA graph, see
    :func:`train_loop`; forecasting cells train eagerly); returns it (eval mode), its loss history
    ``(step, loss, seconds)`` and the patch tokens one training step sees on average (context plus horizon, every
    channel of the batch's windows)."""
    spec, config, history = task_spec(cell["task"]), cell_config(cell), []
    if spec["kind"] == "probe":
        model = train_probe_model(spec["probe"], spec["level"], config, cell["steps"], cell["batch_size"], cell["lr"],
                                  seed=cell["seed"], device=device, history=history, cuda_graph=cuda_graph)
        sample = PROBES[spec["probe"]](1, spec["level"], seed=0)
        steps = sample.context.shape[1] + sample.target.shape[1]
        return model, history, cell["batch_size"] * -(-steps // spec["patch_length"]) * sample.context.shape[2]
    torch.manual_seed(cell["seed"])
    model = TshamModel(config).to(device)
    pool = training_pool(spec, cell)
    stream = iter(WindowStream(pool, spec["context_length"], spec["horizon"], cell["batch_size"], seed=cell["seed"]))
    per_series = -(-(spec["context_length"] + spec["horizon"]) // spec["patch_length"])
    seen = []

    def draw(step: int) -> dict:
        batch = with_flags(next(stream), spec)
        channels = sum(batch[k].shape[-1] for k in ("past_target", "past_covariates", "event_flags") if k in batch)
        seen.append(batch["past_target"].shape[0] * per_series * channels)
        return batch

    # not graphed: the synthetic pool mixes channel layouts (1 or 4 channels, covariates or none), and a captured
    # step replays one layout
    train_loop(model, draw, forecast_loss, cell["steps"], cell["lr"], history=history)
    return model, history, float(np.mean(seen))


def with_flags(batch: dict, spec: dict) -> dict:
    """On the flagged task (``synthetic``), every batch gets an event-flag channel, all zero where its layout has
    none, so event and composite routing can run on every batch and every policy sees the same inputs."""
    if spec["test"] != "synthetic" or "event_flags" in batch:
        return batch
    return {**batch, "event_flags": torch.zeros(*batch["past_target"].shape[:2], 1)}


def forecast_loss(model: TshamModel, batch: dict) -> torch.Tensor:
    """The training loss (pinball plus the routers' auxiliary losses) of one :class:`WindowStream` batch."""
    out, b = forecast_windows(model, batch)
    return model.loss(out, b["future_target"], b["future_observed_values"])


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


def held_out_batches(spec: dict, which: str, windows: int) -> list[dict]:
    """Fixed windows of synthetic series drawn from a seed no cell trains on (``which``: "val" or "test"), every
    channel layout in proportion (:meth:`WindowStream.stratified`: the flagged layouts are always there)."""
    seed = HELD_OUT_SEEDS[which]
    pool = list(synthetic_pool(64, 4 * spec["context_length"], seed))
    stream = WindowStream(pool, spec["context_length"], spec["horizon"], 64, seed=seed)
    return [with_flags(b, spec) for b in stream.stratified(windows)]


@torch.no_grad()
def evaluate_cell(model: TshamModel, cell: dict, device: str) -> dict:
    """The cell's validation score (``val``, what the learning rate is chosen on), its test metric (``metric``,
    ``test``, ``higher_is_better``), the realised KV fraction overall and per layer (on the test data: every
    test batch; LTSF: the validation rows), for forecasting the routing map on a real series, and on a task with
    ``gift`` its zero-shot GIFT scores (``gift``: :func:`gift_scores`, KV fractions on the evaluation contexts)."""
    spec = task_spec(cell["task"])
    if spec["kind"] == "probe":
        labels = {"task": cell["task"]}
        val = evaluate_probe(model, spec["probe"], spec["level"], cell["n_val"], 20_000 + cell["seed"], labels, device)
        test = evaluate_probe(model, spec["probe"], spec["level"], cell["n_test"], TEST_SEED_OFFSET + cell["seed"],
                              labels, device)
        batch = PROBES[spec["probe"]](32, spec["level"], seed=TEST_SEED_OFFSET + cell["seed"])
        from tsham.probes.runner import probe_forward

        layers = realised_per_layer(model, probe_forward(model, batch, device))
        extras = {k: float(test[k].mean()) for k in ("capture_rate", "slot_precision", "needle_attention", "mse")
                  if k in test}
        return {"val": float(val["RS"].mean()), "metric": "recall skill", "test": float(test["RS"].mean()),
                "higher_is_better": True, "kv_realised": float(test["kv_fraction"].mean()), "kv_per_layer": layers,
                **extras, "routing_map": None}
    ltsf = spec["test"] == "ltsf"
    val_batches = ltsf_validation(spec) if ltsf else held_out_batches(spec, "val", cell["n_val"])
    result = {"val": validation_loss(model, val_batches), "higher_is_better": False,
              "routing_map": routing_map(model, spec, device)}
    if spec["test"] == "ltsf":
        from tsham.experiments.ltsf import normalised, score

        mse, mae = score(model, normalised(spec["dataset"]), spec["horizon"], device)
        result |= {"metric": f"MSE at {spec['horizon']}", "test": mse, "MAE": mae,
                   **routing_on(model, val_batches)}  # the held-out rows of the same series
    else:
        kv = KvMeter(model)
        result |= {"metric": "pinball loss", "test": validation_loss(model, held_out_batches(
            spec, "test", cell["n_test"]), on_output=kv), **kv.result()}
        if spec.get("gift"):  # the same model zero-shot on GIFT: the report's task "gift" (routing_report)
            result["gift"] = gift_scores(ZeroFlags(model), device)
    return result


class KvMeter:
    """Collects the realised KV fraction per layer over forwards, weighted by their windows."""

    def __init__(self, model: TshamModel):
        self.model, self.sums, self.windows = model, None, 0

    def __call__(self, out, batch=None) -> None:
        n = out.layers[0].mask.shape[0]  # token streams of this forward
        layers = np.array(realised_per_layer(self.model, out)) * n
        self.sums, self.windows = layers if self.sums is None else self.sums + layers, self.windows + n

    def result(self) -> dict:
        per_layer = (self.sums / self.windows).tolist()
        return {"kv_per_layer": per_layer, "kv_realised": float(np.mean(per_layer))}


def routing_on(model: TshamModel, batches: list[dict]) -> dict:
    """The realised KV fraction (per layer and overall) of ``model`` on ``batches``."""
    kv = KvMeter(model)
    validation_loss(model, batches, on_output=kv)
    return kv.result()


def realised_per_layer(model: TshamModel, out) -> list[float]:
    """Each layer's realised KV fraction: the slots the streams keep at the end (under a recency window at most the
    window plus its sinks) over the tokens they could route (a short series' left padding is not), over streams
    and heads."""
    from tsham.probes.diagnostics import resident_slots

    tokens = int(out.layers[0].routable().sum())
    return [float(s.float().sum()) / max(1, tokens * s.shape[-1]) for s in resident_slots(model, out)]


def ltsf_validation(spec: dict) -> list[dict]:
    """Windows whose forecasts lie in the LTSF validation rows (their look-back reaches into the train rows)."""
    from tsham.experiments.ltsf import TEST_START, TRAIN_END, normalised

    pool = [PoolSeries.from_array(c) for c in normalised(spec["dataset"])[:TEST_START].T]
    return split_tails(pool, TEST_START - TRAIN_END, spec["context_length"], spec["horizon"], 512, 64, seed=0)[1]


class ZeroFlags(torch.nn.Module):
    """A synthetic-task model (trained with an all-zero event-flag channel on unflagged layouts, :func:`with_flags`)
    given that channel on series without flags, so GIFT scores the model as it was trained."""

    def __init__(self, model: TshamModel):
        super().__init__()
        self.model, self.config = model, model.config

    @property
    def stack(self):  # what KvMeter reads the routers' state from
        return self.model.stack

    def forward(self, past_target: torch.Tensor, horizon: int, **kwargs):
        """``past_target`` ``[B, T]`` or ``[B, T, C]``; the flags ``[B, T, 1]`` are zeros."""
        zeros = torch.zeros(*past_target.shape[:2], 1, device=past_target.device)
        return self.model(past_target, horizon, event_flags=zeros, **kwargs)


def gift_scores(model: torch.nn.Module, device: str) -> dict:
    """The eight offline GIFT-Eval configurations: geo-mean MASE and CRPS ratios to seasonal naive, and the KV
    fraction realised on their contexts (``model``: a :class:`TshamModel` or one wrapped in :class:`ZeroFlags`)."""
    from tsham.experiments.zero_shot import contexts

    from tsham.evaluation import CONFIGS, gift_eval_data, scoreboard
    from tsham.forecasting.gluonts_adapter import TshamPredictor
    from tsham.forecasting.pipeline import TshamPipeline

    pipe = TshamPipeline(model, device)
    board = scoreboard(lambda h: TshamPredictor(pipe, h))
    geo = board[board["dataset"] == "geo-mean"].iloc[0]
    kv = KvMeter(model)  # measured on the evaluation series themselves: up to 64 contexts per configuration
    for name, term in CONFIGS:
        data, _, h = gift_eval_data(name, term)
        past = contexts(data)
        picked = [past[i][-model.config.context_length:] for i in np.random.default_rng(0).permutation(len(past))[:64]]
        x = np.full((len(picked), max(map(len, picked))), np.nan, np.float32)  # left-padded as missing
        for row, series in zip(x, picked, strict=True):
            row[len(row) - len(series):] = series
        kv(model(torch.from_numpy(x).to(device)[..., None], h))
    return {"metric": "geo-mean MASE ratio", "test": float(geo["MASE_ratio"]), "CRPS_ratio": float(geo["CRPS_ratio"]),
            **kv.result()}


def routing_map(model: TshamModel, spec: dict, device: str) -> dict:
    """Which context patch tokens each layer holds at the end (routed by any head; under a cap or recency window
    only the sinks and the last ``cap``) on the last context of a real series."""
    from tsham.datasets import load
    from tsham.experiments.routing_positions import kept_tokens

    name, column = ROUTING_MAP_SERIES
    values = load(name)[column].to_numpy(np.float32)[-spec["context_length"]:]
    x = torch.from_numpy(values).to(device)[None, :, None]
    flags = with_flags({"past_target": x}, spec).get("event_flags")  # a real series has no events
    out = model(x, spec["patch_length"], event_flags=None if flags is None else flags.to(device))
    kept = []
    for block, d in zip(model.stack.blocks, out.layers, strict=True):
        routed = torch.nonzero(d.mask[0, :out.num_context_patches].any(-1)).flatten().tolist()
        kept.append(kept_tokens(routed, block.mixer.router.cap, block.mixer.router.sinks))
    return {"series": f"{name}:{column}", "values": values.tolist(), "patch_length": spec["patch_length"],
            "kept": kept}


def steady_throughput(history: list, tokens_per_step: float) -> float:
    """Patch tokens per second from a :func:`train_loop` history ``(step, loss, seconds)``: the steps after the
    first (compilation, caches) over the time they took; NaN with a single logged step."""
    (first, _, t_first), (last, _, t_last) = history[0], history[-1]
    return tokens_per_step * (last - first) / (t_last - t_first) if last > first else math.nan


def isolated_throughput(task: str, policies, budget: float, recipe: dict, device: str, steps: int = 12,
                        rounds: int = 3) -> list[dict]:
    """Router overhead measured alone: per policy, :func:`train_loop` steps of the task's backbone on one fixed
    batch, the policies timed one after another in this process, ``rounds`` times over (the cells' own throughput
    is measured while other workers share the device). A step of these small models is bound by kernel launches,
    so one pass reads mostly noise and warm-up (on the H200 full attention once timed 1.30x pure GDN's tokens/s): each
    policy keeps its best round, as ``timeit`` does. Returns rows: policy, patch tokens/s, peak GPU memory of its
    training steps (MiB, None on CPU), parameters and the router's share."""
    from tsham.experiments.routing_policies import sweep_budget_of, task_pairs

    pairs, spec, runs = task_pairs(task, policies, (budget,)), task_spec(task), {}
    for policy in dict.fromkeys(p for p, _ in pairs):
        cell = {**recipe, "task": task, "policy": policy, "budget": sweep_budget_of(pairs, policy, budget), "seed": 0}
        torch.manual_seed(0)
        model = TshamModel(cell_config(cell))  # on the device only while timed: peak memory is one model's
        if spec["kind"] == "probe":
            probe_batch = PROBES[spec["probe"]](cell["batch_size"], spec["level"], seed=0)
            batch, loss = training_batch(model, probe_batch), training_loss
            sample = probe_batch.context
            tokens = sample.shape[0] * sample.shape[2] * -(-(sample.shape[1] + probe_batch.target.shape[1])
                                                              // spec["patch_length"])
        else:
            stream = WindowStream(list(synthetic_pool(16, 4 * spec["context_length"], 0)), spec["context_length"],
                                  spec["horizon"], cell["batch_size"], seed=0)
            batch, loss = with_flags(stream.stratified(cell["batch_size"], cell["batch_size"])[0], spec), forecast_loss
            channels = sum(batch[k].shape[-1] for k in ("past_target", "past_covariates", "event_flags") if k in batch)
            tokens = batch["past_target"].shape[0] * channels * -(-(spec["context_length"] + spec["horizon"])
                                                                   // spec["patch_length"])
        runs[policy] = {"model": model, "batch": batch, "loss": loss, "tokens": tokens, "speeds": [], "peak": None}
    for _ in range(rounds):
        for run in runs.values():
            model = run["model"].to(device)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            history = []
            train_loop(model, lambda step, b=run["batch"]: b, run["loss"], steps, 1e-4, history=history)
            run["speeds"].append(steady_throughput(history, run["tokens"]))
            if device.startswith("cuda"):
                run["peak"] = max(run["peak"] or 0.0, torch.cuda.max_memory_allocated() / 2**20)
            run["model"] = model.to("cpu")
    rows = []
    for policy, run in runs.items():
        model = run["model"]
        routers = sum(p.numel() for n, p in model.named_parameters() if ".router." in n)
        total = sum(p.numel() for p in model.parameters())
        rows.append({"task": task, "policy": policy, "tokens_per_s": max(run["speeds"]), "rounds": run["speeds"],
                     "peak_memory_mib": run["peak"], "parameters": total, "router_share": routers / total})
    return rows
