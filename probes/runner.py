"""Probe runner: train (or load) a forecaster per (policy, budget), score it on a probe, one row per example.

    from tsham.probes.runner import run_probe
    rows = run_probe("delayed_action", level="easy", policies=["surprise", "random"], budgets=[0.05, 0.1],
                     seeds=[0], n_test=256, train_steps=300)       # pandas DataFrame, one row per example

Controls come with every sweep: pure GDN (budget 0) and full attention (budget 1) are added to the budgets,
``random`` routes the same budget by chance, and ``oracle`` routes exactly the needle's patch tokens (``oracle``
and ``event`` cells have no nominal budget: their ``budget`` is NaN and ``kv_fraction`` says what they kept). Each row
holds the recall skill against the needle-ablated twin (PROBES.md), the MSE of both forecasts, and the router
diagnostics of :mod:`tsham.probes.diagnostics` (realised KV fraction and bytes, capture rate, slot precision,
attention mass on the needle).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tsham.probes.diagnostics import recorded_reads, router_diagnostics
from tsham.probes.generators import PROBES, VARIED_LENGTH, ProbeBatch, parse_level
from tsham.probes.metrics import (
    codebook_accuracy,
    cosine_similarity,
    effect_metrics,
    nearest_value_accuracy,
    recall_skill,
    tolerance_accuracy,
    window_mse,
)
from tsham.probes.resume import load_loop_state, load_weights, save_loop_state

from tsham.config import TshamConfig
from tsham.ham import budgetable_routers, calibrate_kv_budget
from tsham.model import TshamModel

POLICIES = ("surprise", "uncertainty", "learned", "distilled", "composite", "random", "event", "recency", "oracle")
TRAIN_SEED_OFFSET = 1_000_003  # training batches never reuse a test seed
TEST_SEED_OFFSET = 10_000  # a cell of seed s is scored on the sequences of seed TEST_SEED_OFFSET + s
CALIBRATION_SEED_OFFSET = 500_000  # thresholds are calibrated on test seed + this, never on the test sequences
FIXED_BUDGET = float("nan")  # the budget column of policies that route what the needles or flags say


def probe_config(policy: str, budget: float, patch_length: int = 8, d_model: int = 32, n_layers: int = 2,
                 context_length: int = 1024, bind_channels: bool = True, kv_rope_base: float = 0.0,
                 kv_own_qk: bool = False, router_hidden: int | None = None) -> TshamConfig:
    """A small forecaster whose HAM layers route with ``policy`` at ``budget`` (0: pure GDN, 1: full attention).

    ``bind_channels`` (:class:`PatchConfig`) is on by default: without it the encoder mixes channels through one
    shared value direction, and no policy, full attention included, learned the multichannel keys of probes C and
    E in a few thousand steps. ``kv_rope_base`` (:class:`HamConfig`) gives the scratchpad rotary positions (probe
    D asks for the k-th most recent snapshot, which attention cannot find without them); ``kv_own_qk`` gives it
    query and key projections of its own instead of the GDN's (probe A's read stayed uniform without them).
    ``router_hidden``: the MLP width of the learned and distilled routers (default: d_model / 16 and 16).

    ``oracle``, ``event``, ``none`` and ``all`` ignore the budget: the needles, the flags or the policy decide
    what is routed, and the realised fraction is what they give. ``composite`` routes surprise at the budget plus
    every flagged token; ``recency`` keeps the last ``budget`` of the context's patch tokens plus one sink."""
    if policy in ("oracle", "event", "none", "all"):
        kwargs = {}
    elif budget == 0.0:
        policy, kwargs = "none", {}
    elif budget == 1.0:
        policy, kwargs = "all", {}
    elif policy == "random":
        kwargs = {"fraction": budget}
    elif policy == "recency":
        kwargs = {"window": max(1, round(budget * context_length / patch_length)), "sinks": 1}
    elif policy in ("surprise", "uncertainty"):
        kwargs = {"target": budget}
    elif policy == "learned":  # a scorer of d_model / 16 hidden units keeps the router under 1% of the parameters
        kwargs = {"target": budget, "hidden": router_hidden or max(2, d_model // 16)}
    elif policy == "distilled":  # fitted to the attention of the query key's two tokens and the forecast's two
        kwargs = {"target": budget, "hidden": router_hidden or 16, "queries": 4}
    elif policy == "composite":  # surprise at the budget, plus every flagged token (the union)
        kwargs = {"routers": [{"name": "surprise", "target": budget}, {"name": "event"}], "mode": "or"}
    else:
        raise ValueError(f"unknown probe policy {policy!r}; known: {POLICIES}")
    config = TshamConfig.small(d_model=d_model, patch_length=patch_length, n_layers=n_layers, num_heads=2,
                               head_dim=d_model // 2, router=policy, router_kwargs=kwargs, kv_rope_base=kv_rope_base,
                               kv_own_qk=kv_own_qk)
    config.context_length, config.align = context_length, "start"
    config.patch.bind_channels = bind_channels
    return config


VIEWS = ("example", "twin", "control")


def probe_context_length(probe: str, level: str) -> int:
    """Context steps of a probe at a level (what sizes a recency window)."""
    return PROBES[probe](1, level, seed=0).context.shape[1]


def probe_cells(probe: str, level: str, policies: Sequence[str], budgets: Sequence[float],
                controls: bool = True) -> list[tuple[str, float]]:
    """The (policy, nominal budget) cells of a sweep: the pure-GDN and full-attention controls (``controls``),
    one cell for oracle and for event (their budget is :data:`FIXED_BUDGET`), and every budget for the other
    policies; event and composite only where the probe has flags (elsewhere they would be pure GDN and surprise);
    ``none`` and ``all`` may also be named as policies."""
    flagged = PROBES[probe](1, level, seed=0).flags.shape[2] > 0
    cells = [("none", 0.0), ("all", 1.0)] if controls else []
    for policy in policies:
        if policy in ("event", "composite") and not flagged:
            continue
        if policy in ("none", "all"):
            cells.append((policy, float(policy == "all")))
        elif policy in ("oracle", "event"):
            cells.append((policy, FIXED_BUDGET))
        else:  # a scoring policy at 0 or 1 is the pure-GDN or full-attention control (probe_config builds it so)
            cells += [("none" if b == 0 else "all" if b == 1 else policy, float(b)) for b in budgets]
    return _unique(cells)


def _unique(cells: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Cells in order without repeats (NaN budgets compare equal here)."""
    seen, out = set(), []
    for policy, budget in cells:
        key = (policy, "fixed" if np.isnan(budget) else budget)
        if key not in seen:
            seen.add(key)
            out.append((policy, budget))
    return out


def model_inputs(batch: ProbeBatch, view: str, device) -> dict:
    """TshamModel arguments for one view of a probe batch: ``"example"`` (context and flags), ``"twin"`` (the
    needle-ablated context and flags) or ``"control"`` (probe C's channel-swap context, the example's flags).
    Target channels become ``past_target``, the rest past covariates; the flags are known ahead; the needle
    steps are for an oracle router (in the twin the ablated step, or ``twin_needles`` where the probe sets it)."""
    if view not in VIEWS:
        raise ValueError(f"probe view must be one of {VIEWS}; got {view!r}")
    context = {"example": batch.context, "twin": batch.twin_context, "control": batch.control_context}[view]
    if context is None:
        raise ValueError(f"this probe has no {view!r} view")
    flags = batch.twin_flags if view == "twin" else batch.flags
    oracle = batch.twin_needles if view == "twin" and batch.twin_needles is not None else batch.needles
    others = [c for c in range(context.shape[2]) if c not in batch.target_channels]
    t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return {
        "past_target": t(context[..., batch.target_channels]),
        "past_covariates": t(context[..., others]) if others else None,
        "event_flags": t(flags) if flags.shape[2] else None,
        "oracle_steps": torch.as_tensor(oracle, device=device),
    }


def forward_inputs(model: TshamModel, batch: ProbeBatch, view: str, device, needles: bool = False) -> dict:
    """:func:`model_inputs` without the absent ones: the needle steps reach the routers only when the model routes
    with the oracle or ``needles`` asks for them (a guided curriculum stage), and a probe without covariates or
    flags passes none."""
    kwargs = model_inputs(batch, view, device)
    if model.config.ham.router != "oracle" and not needles:
        kwargs.pop("oracle_steps")
    return {k: v for k, v in kwargs.items() if v is not None}


def probe_forward(model: TshamModel, batch: ProbeBatch, device, view: str = "example"):
    """The model's forecast (a :class:`TshamOutput`, ``quantiles [N, Ct, Q, H]``) for one view of a probe batch
    (:func:`forward_inputs`)."""
    return model(horizon=batch.target.shape[1], **forward_inputs(model, batch, view, device))


def training_batch(model: TshamModel, batch: ProbeBatch, needles: bool = False) -> dict[str, torch.Tensor]:
    """A probe batch as :func:`train_loop` draws it: the example view's :func:`forward_inputs` (``needles``: with
    the needle steps) on the CPU plus ``future_target`` ``[N, H, Ct]``; :func:`training_loss` reads it."""
    return {**forward_inputs(model, batch, "example", "cpu", needles), "future_target": torch.as_tensor(batch.target)}


def training_loss(model: TshamModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of a :func:`training_batch` (moved to the model's device): pinball plus the routers'
    auxiliary losses."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items()}
    target = inputs.pop("future_target")
    return model.loss(model(horizon=target.shape[1], **inputs), target)


def train_loop(model: TshamModel, draw, batch_loss, steps: int, lr: float, warmup: float = 0.05,
               history: list | None = None, cuda_graph: bool = False, checkpoint: str | Path | None = None,
               checkpoint_every: float = 60.0, before_step=None) -> TshamModel:
    """The small-model training loop of the probes and the routing benchmark.

    ``draw(step)`` returns training step ``step``'s batch, a dict of tensors (CPU or device), and runs one step
    ahead in a thread while the current step trains (probe A's generator takes ~100 ms per batch of 64, as long
    as a step; numpy releases the GIL for most of it). ``batch_loss(model, batch)`` returns the batch's scalar
    loss; it moves the batch to the model's device. AdamW with a linear warm-up over ``warmup`` of the steps, then
    cosine decay to 10% of ``lr``; gradients clipped to norm 1. ``history``, if given, receives ``(step, loss,
    seconds since the start)`` every 50 steps and at the last. ``cuda_graph`` (on CUDA only; ignored on the CPU)
    replays the step as a CUDA graph after three eager ones (:class:`tsham.training.cuda_graph.GraphedStep`); a
    batch whose shapes differ from the last one's starts a new graph (a staged curriculum changes them once, so
    batches whose shapes change often should train eagerly). ``checkpoint``: a file the loop resumes
    from if it exists and saves its state to every ``checkpoint_every`` seconds (:mod:`tsham.probes.resume`: the
    resumed loop runs the same steps, so a cell may span several device calls); the caller deletes it once the
    model is kept. ``before_step(step)``, if given, runs before each step (also the first one a resumed loop
    runs) and returns True when it changed what a captured graph holds fixed (a router's target fraction): the
    step then starts a new graph. Returns the model in eval mode."""
    model.train()
    device = next(model.parameters()).device
    graphed = cuda_graph and device.type == "cuda"
    # a captured optimizer step reads its learning rate from a device tensor, updated in place below
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them unless a caller froze some
    optimizer = torch.optim.AdamW(trainable, lr=torch.tensor(lr, device=device) if graphed else lr,
                                  weight_decay=0.0, capturable=graphed)
    ramp = max(1, round(warmup * steps))

    def lr_factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - ramp) / max(1, steps - ramp)))

    def eager_step(batch: dict) -> torch.Tensor:
        loss = batch_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        # detached: a loss kept until the next step keeps its autograd graph alive, and with it the gradient
        # accumulators a captured backward would otherwise meet from the warm-up's side stream (torch warns)
        return loss.detach()

    if graphed:
        from tsham.training.cuda_graph import GraphedStep  # here: tsham.training imports Lightning
    run_step, shapes = eager_step, None
    first, trained, log = 0, 0.0, [] if history is None else history
    if checkpoint is not None and Path(checkpoint).is_file():
        first, saved, trained = load_loop_state(checkpoint, model, optimizer, steps)
        log.extend(saved)  # the steps before the cut, then this run's
    started = time.perf_counter() - trained
    saved_at = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as drawer:
        pending = drawer.submit(draw, first) if first < steps else None
        for step in range(first, steps):
            if checkpoint is not None and step > first and time.perf_counter() - saved_at >= checkpoint_every:
                save_loop_state(checkpoint, model, optimizer, step, steps, log, time.perf_counter() - started)
                saved_at = time.perf_counter()
            batch = pending.result()
            if step + 1 < steps:
                pending = drawer.submit(draw, step + 1)
            for group in optimizer.param_groups:
                if graphed:
                    group["lr"].fill_(lr * lr_factor(step))
                else:
                    group["lr"] = lr * lr_factor(step)
            changed = before_step is not None and before_step(step)
            if graphed:
                signature = {k: (v.shape, v.dtype) for k, v in batch.items()}
                if signature != shapes or changed:  # the first batch, or a curriculum's next stage
                    if shapes is not None:
                        del run_step  # the last stage's graph and its memory pool, before the next capture
                        torch.cuda.empty_cache()
                    run_step, shapes = GraphedStep(eager_step, device), signature
            loss = run_step(batch)
            if step % 50 == 0 or step == steps - 1:
                log.append((step, float(loss), time.perf_counter() - started))
    return model.eval()


def train_probe_model(probe: str, level: str, config: TshamConfig, steps: int, batch_size: int = 16,
                      lr: float = 2e-3, seed: int = 0, device: str = "cpu", warmup: float = 0.05,
                      history: list | None = None, curriculum: str | None = None,
                      curriculum_steps: int | None = None, curriculum_budget: float | None = None,
                      curriculum_guide: bool = False, cuda_graph: bool = False,
                      checkpoint: str | Path | None = None, init: str | Path | None = None,
                      fresh_routers: bool = False, routers_only: bool = False) -> TshamModel:
    """Trains ``config`` on fresh batches of the probe (seeds disjoint from the test seeds) with
    :func:`train_loop` (``cuda_graph``: replay the step as a CUDA graph on CUDA; ``checkpoint``: resume from and
    save to this file); returns it in eval mode.

    ``curriculum`` names an easier level of the probe (knobs allowed: ``"easy:distractors=7"``): the first
    ``curriculum_steps`` steps (default: half of them) draw their batches from it, the rest from ``level``. On long
    contexts a diffuse attention gives the key-query match almost no gradient (Zoology trains MQAR on a mix of sizes
    for the same reason); a read learned on short contexts without positions carries over (probe A: full attention
    trained on 1024-step contexts kept 70-93% of its recall skill on 4096-step ones, experiments/README.md). The
    stages change the context length once, so a CUDA graph is captured once per stage.

    ``curriculum_budget``: the routers that take a budget aim at this fraction in the first stage and at their own
    from the first step of the second (their threshold then starts at that batch's quantile; a router with a fixed
    threshold and no target, random routing, gets its threshold back). A level crowded
    with needles needs more than the target level's budget to hold the queried one, and a model whose memory
    rarely holds it does not learn to read it (probe A: 8 motifs fill 37.5% of 64 tokens and 9.4% of 256;
    experiments/README.md, thirteenth session).

    ``curriculum_guide``: in the first stage those routers are guided (``Router.guided``): the probe's needles
    (what an oracle keeps) enter the scratchpad on top of the router's own tokens, so the model learns to read
    them from memory whatever its router keeps; the second stage routes by the router alone. (Probe A: routers kept
    the motif on every seed, but only the models of some seeds learned to read it, experiments/README.md,
    fourteenth session.) Models without such a router (the controls, oracle, event) train as without either.

    ``init``: a loop state (:mod:`tsham.probes.resume`: a finished run's weights or a cut run's) the model starts
    from instead of its random initialisation, with its routers' calibrated thresholds: a further stage after a
    finished run, on another level (probe C: a read learned at 16 binding events, then the same 16 spaced apart).
    The optimizer and the learning-rate schedule start afresh; a ``checkpoint`` to resume from replaces these
    weights with its own. ``fresh_routers``: ``init`` comes from the same model under another policy (full
    attention's weights, for a router that learns what that attention reads), so the routers' own parameters start
    from their initialisation (:func:`tsham.probes.resume.load_weights`).

    ``routers_only``: only the routers' own parameters train; every other weight stays as ``init`` left it (a
    router fitted to a finished model, e.g. a :class:`~tsham.ham.routers.distilled.DistilledRouter` to full
    attention's read: the model it routes for is the one that was trained, not one retrained around the router).
    Needs ``init`` and a router with parameters."""
    check_curriculum(probe, curriculum, curriculum_steps, steps, [config.ham.router], curriculum_budget,
                     curriculum_guide)
    if curriculum is not None and curriculum_steps is None:
        curriculum_steps = steps // 2
    if probe in VARIED_LENGTH and cuda_graph and torch.device(device).type == "cuda":
        raise ValueError(f"{probe!r} changes the context length between steps; a CUDA graph replays fixed shapes")
    torch.manual_seed(seed)
    model = TshamModel(config)
    if init is not None:
        load_weights(init, model, doing="start from", fresh_routers=fresh_routers)
    if routers_only:
        freeze_all_but_routers(model, init)
    model = model.to(device)

    routers = budgetable_routers(model) if curriculum_budget is not None or curriculum_guide else []
    guided = bool(routers) and curriculum_guide

    def first_stage(step: int) -> bool:
        return curriculum is not None and step < curriculum_steps

    def make(step: int) -> dict[str, torch.Tensor]:
        batch = PROBES[probe](batch_size, curriculum if first_stage(step) else level,
                              seed=TRAIN_SEED_OFFSET + seed * steps + step)
        return training_batch(model, batch, needles=guided and first_stage(step))

    own = [r.target for r in routers]
    fixed_tau = [r.tau.detach().clone() for r in routers]  # a router without a target keeps its threshold

    def stage(step: int) -> bool:  # each step's target and guide: one check, a change only between the stages
        targets = [curriculum_budget] * len(routers) if first_stage(step) and curriculum_budget is not None else own
        changed = [(r, tau, t) for r, tau, t in zip(routers, fixed_tau, targets, strict=True) if r.target != t]
        for router, tau, target in changed:
            if step == curriculum_steps:
                router.retarget(target)  # the second stage's first batch sets tau to its own quantile
                if target is None:  # random routing: its fixed threshold is its budget (the first stage moved it)
                    router.tau.copy_(tau)
            else:  # a fresh start or a resumed stage: tau as the loop state left it
                router.target = target
        guide = guided and first_stage(step)
        steered = [r for r in routers if r.guided != guide]
        for router in steered:
            router.guided = guide
        return bool(changed or steered)

    return train_loop(model, make, training_loss, steps, lr, warmup, history, cuda_graph=cuda_graph,
                      checkpoint=checkpoint, before_step=stage if routers else None)


def freeze_all_but_routers(model: TshamModel, init: str | Path | None) -> None:
    """Leaves only the routers' parameters trainable (``requires_grad``); raises ``ValueError`` when there is no
    ``init`` to keep the rest of (a frozen random model) or no router parameter to train."""
    if init is None:
        raise ValueError("routers_only trains the routers of a finished model: give init (its weights)")
    trainable = 0
    for name, parameter in model.named_parameters():
        own = ".router." in name
        parameter.requires_grad_(own)
        trainable += parameter.numel() if own else 0
    if not trainable:
        raise ValueError(f"routers_only: policy {model.config.ham.router!r} has no router parameters to train")


def check_curriculum(probe: str, curriculum: str | None, curriculum_steps: int | None, steps: int,
                     policies: Sequence[str] = (), curriculum_budget: float | None = None,
                     curriculum_guide: bool = False) -> None:
    """Raises ``ValueError`` naming what is wrong with a curriculum of ``steps``-step training of ``policies``."""
    if curriculum is None:
        if curriculum_steps is not None or curriculum_budget is not None or curriculum_guide:
            raise ValueError("curriculum_steps, curriculum_budget and curriculum_guide need a curriculum level")
        return
    if curriculum_budget is not None and not (isinstance(curriculum_budget, int | float)
                                              and 0.0 < curriculum_budget <= 1.0):
        raise ValueError(f"curriculum_budget must be a KV fraction in (0, 1]; got {curriculum_budget!r}")
    first = steps // 2 if curriculum_steps is None else curriculum_steps
    for name, used in (("curriculum_budget", curriculum_budget is not None), ("curriculum_guide", curriculum_guide)):
        if not used:
            continue
        if isinstance(first, int) and first < 1:
            raise ValueError(f"{name} needs a first stage: curriculum_steps={first} of {steps} steps leaves none")
        if isinstance(first, int) and first >= steps:  # the routers would be scored as the first stage trains them
            raise ValueError(f"{name} needs a second stage: curriculum_steps={first} leaves none of the {steps} steps")
        if "composite" in policies:  # "or" mode: each child keeps its own threshold, none is budgetable
            raise ValueError(f"{name} changes the routers that take a budget; composite routing has none of its own, "
                             "so its cells would train as without it")
    parse_level(probe, curriculum)  # names an unknown level or knob
    if curriculum_steps is not None and not (isinstance(curriculum_steps, int) and 0 <= curriculum_steps <= steps):
        raise ValueError(f"curriculum_steps must be a whole number in [0, steps={steps}]; got {curriculum_steps!r}")
    if "recency" in policies:  # its window is sized in the target level's tokens: another budget on the easier level
        raise ValueError("recency routing keeps a window sized for the target level's context; it cannot train on a "
                         "curriculum of another length")


SCORING_CELLS = 2**27  # sequences x tokens^2 in a scoring forward: the torch scratchpad's (B, H, T, T) map ~1 GB


def scoring_rows(model: TshamModel, context_steps: int, most: int = 64) -> int:
    """How many sequences of ``context_steps`` steps one scoring forward takes (at most ``most``): the attention
    map grows with the square of the patch tokens, and 64 sequences of 4112 tokens ran nine cells of an H200 out of
    memory (2026-12-03). Up to 1448 tokens a forward keeps the 64 sequences it always took."""
    tokens = -(-context_steps // model.config.patch.patch_length)
    return max(1, min(most, SCORING_CELLS // tokens**2))


@torch.no_grad()
def evaluate_probe(model: TshamModel, probe: str, level: str, n: int, seed: int, labels: dict,
                   device: str = "cpu", batch_size: int | None = None) -> pd.DataFrame:
    """One row per test example: recall skill against the twin, MSEs, the router diagnostics
    (:func:`router_diagnostics`), tolerance accuracy where the probe sets a tolerance (A, D), nearest-value
    accuracy and cosine similarity where it has candidate values (E), sign, magnitude and onset of the recalled
    effect (B), and for probe C codebook accuracy and the channel-swap control's recall skill."""
    batch = PROBES[probe](n, level, seed=seed)
    batch_size = batch_size or scoring_rows(model, batch.context.shape[1])
    frames = []
    for start in range(0, n, batch_size):
        part = batch.rows(start, start + batch_size)
        with recorded_reads(model) as reads:
            out = probe_forward(model, part, device)
        pred = out.median.permute(0, 2, 1).cpu().numpy()  # (n, H, Ct)
        twin = probe_forward(model, part, device, "twin").median.permute(0, 2, 1).cpu().numpy()
        columns = {"example": np.arange(start, start + len(pred)), "RS": recall_skill(pred, twin, part.target),
                   "mse": window_mse(pred, part.target), "mse_twin": window_mse(twin, part.target),
                   **router_diagnostics(model, out, reads, part.needles)}
        if part.tolerance is not None:
            reference = part.target if part.recalled is None else part.recalled
            columns["tolerance_accuracy"] = tolerance_accuracy(pred, reference, part.tolerance)
        if part.effect is not None:
            columns.update(effect_metrics(pred, twin, part.effect))
        if part.candidates is not None:
            columns["nearest_value_accuracy"] = nearest_value_accuracy(pred, part.target, part.candidates)
            columns["cosine"] = cosine_similarity(pred, part.target)
        if part.codebook is not None:
            # the level sits on the background: read it as the forecast minus the forecast on the twin
            columns["codebook_accuracy"] = codebook_accuracy(pred, part.codebook, part.answers, baseline=twin)
        if part.control_context is not None:
            control = probe_forward(model, part, device, "control").median.permute(0, 2, 1).cpu().numpy()
            columns["control_RS"] = recall_skill(control, twin, part.target)
        frames.append(pd.DataFrame({**labels, **columns}))
    return pd.concat(frames, ignore_index=True)


def run_probe(probe: str, level: str = "easy", policies: Sequence[str] = ("surprise", "random", "oracle"),
              budgets: Sequence[float] = (0.05, 0.1), seeds: Sequence[int] = (0,), n_test: int = 256,
              train_steps: int = 300, model: TshamModel | None = None, device: str = "cpu", train_batch: int = 16,
              lr: float = 2e-3, controls: bool = True, utility: int = 0, curriculum: str | None = None,
              curriculum_steps: int | None = None, curriculum_budget: float | None = None,
              curriculum_guide: bool = False, **config_kwargs) -> pd.DataFrame:
    """The sweep: per seed, (policy, budget) pairs plus (``controls``) the pure-GDN and full-attention cells.

    ``curriculum`` / ``curriculum_steps`` / ``curriculum_budget`` / ``curriculum_guide``: train every probe model on
    that easier level of the probe first, its routers at that budget there (if given) and guided to the needles (if
    ``curriculum_guide``) (:func:`train_probe_model`).

    ``utility`` > 0 adds the state-utility probe of each cell's model (:func:`with_state_utility`: held-out R^2 of
    ridge readouts of the target from the recurrent state, the scratchpad and both, on ``utility`` sequences).

    ``config_kwargs`` go to :func:`probe_config`; its ``context_length`` (which sizes a recency window) defaults
    to the probe's context length at this level. With ``model`` (a trained checkpoint) nothing is trained and
    ``policies`` and the training options do not apply: each budget is calibrated on 64 sequences of another seed
    than the test's (:func:`calibrate_probe_budget`), and the policy column is the model's own router (``none`` and
    ``all`` at budgets 0 and 1, the controls the report reads); a model whose router takes no budget (oracle,
    event, all, ...) is scored once at its own routing (budget NaN). Event and composite routing are skipped, with
    a warning, on a probe without flags.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; known: {sorted(PROBES)}")
    parse_level(probe, level)  # every check before the first model trains
    unknown = [p for p in policies if p not in (*POLICIES, "none", "all")]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {POLICIES} (and the controls none, all)")
    bad = [b for b in budgets if not 0.0 <= float(b) <= 1.0]  # NaN fails too
    if bad:
        raise ValueError(f"budgets are KV fractions in [0, 1]; got {bad}")
    for name, value, least in (("n_test", n_test, 1), ("train_steps", train_steps, 1), ("train_batch", train_batch, 1)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}; got {value}")
    if 0 < utility < 8:
        raise ValueError(f"utility (state-utility sequences) must be 0 (off) or >= 8; got {utility}")
    if model is not None and (curriculum, curriculum_steps, curriculum_budget, curriculum_guide) != (
            None, None, None, False):
        raise ValueError("a curriculum trains probe models; a given model is scored, not trained")
    check_curriculum(probe, curriculum, curriculum_steps, train_steps, policies, curriculum_budget, curriculum_guide)
    if any(int(s) != s or s < 0 for s in seeds):
        raise ValueError(f"seeds must be whole numbers >= 0; got {list(seeds)}")
    seeds = list(dict.fromkeys(int(s) for s in seeds))  # a repeated seed would count its rows twice
    config_kwargs.setdefault("context_length", probe_context_length(probe, level))
    example = PROBES[probe](1, level, seed=0)
    horizon = example.target.shape[1]
    longest = (model.config if model is not None else probe_config("none", 0.0, **config_kwargs)).max_horizon
    if horizon > longest:  # e.g. C's lag knob: the target runs lag + 8 steps
        raise ValueError(f"{probe} at level {level!r} asks for a {horizon}-step forecast; the model forecasts at most "
                         f"{longest} steps: lower the level's knobs")
    skipped = [p for p in policies if p in ("event", "composite")]
    if model is None and skipped and not example.flags.shape[2]:
        warnings.warn(f"{probe} has no event flags: the policies {skipped} would be pure GDN or surprise, and are "
                      "not run", stacklevel=2)
    frames = []
    for seed in seeds:
        test_seed = TEST_SEED_OFFSET + seed
        if model is not None:
            # a router that takes no budget (oracle, event, all, ...) routes as it does: one cell, budget NaN
            fixed = not budgetable_routers(model)
            for budget in [math.nan] if fixed else sorted({0.0, *budgets, 1.0}):
                if not fixed:
                    calibrate_probe_budget(model, probe, level, budget, test_seed, device, min(n_test, 64))
                # budgets 0 and 1 make the model pure GDN and full attention: the report reads them as controls
                policy = {0.0: "none", 1.0: "all"}.get(budget, model.config.ham.router)
                labels = {"probe": probe, "level": level, "policy": policy, "budget": budget, "seed": seed}
                rows = evaluate_probe(model, probe, level, n_test, test_seed, labels, device)
                frames.append(with_state_utility(rows, model, probe, level, utility, test_seed, device))
            continue
        for policy, budget in probe_cells(probe, level, policies, budgets, controls):
            config = probe_config(policy, budget, **config_kwargs)
            trained = train_probe_model(probe, level, config, train_steps, train_batch, lr, seed=seed, device=device,
                                        curriculum=curriculum, curriculum_steps=curriculum_steps,
                                        curriculum_budget=curriculum_budget, curriculum_guide=curriculum_guide)
            labels = {"probe": probe, "level": level, "policy": policy, "budget": budget, "seed": seed}
            rows = evaluate_probe(trained, probe, level, n_test, test_seed, labels, device)
            frames.append(with_state_utility(rows, trained, probe, level, utility, test_seed, device))
    return pd.concat(frames, ignore_index=True)


def calibrate_probe_budget(model: TshamModel, probe: str, level: str, budget: float, test_seed: int, device="cpu",
                           n: int = 64) -> list[float]:
    """Sets every budgetable router's threshold so that ``budget`` of the tokens of ``n`` sequences of ``probe`` at
    ``level`` are routed (:func:`tsham.ham.calibrate_kv_budget`, layer after layer); returns the thresholds.

    The sequences are drawn with ``test_seed + CALIBRATION_SEED_OFFSET``: never the test sequences of ``test_seed``
    that the model is then scored on. A trained router's own threshold is a running average of its training
    batches' quantiles, which can lag a model still learning (experiments/README.md, thirteenth session: a tau that
    routed 2% where its batch's quantile routed 10%); calibrating pins the realised budget."""
    sample = PROBES[probe](n, level, seed=test_seed + CALIBRATION_SEED_OFFSET)
    return calibrate_kv_budget(model, budget, lambda: probe_forward(model, sample, device))


def with_state_utility(rows: pd.DataFrame, model: TshamModel, probe: str, level: str, n: int, seed: int,
                       device: str = "cpu") -> pd.DataFrame:
    """``rows`` of one model's cell with its state-utility probe (:func:`tsham.probes.state_utility.state_utility`
    on ``n`` sequences of ``seed``) as columns ``utility_recurrent``, ``utility_scratchpad`` and ``utility_both``,
    and the same from the twins' reads (``utility_*_twin``), the same in every row of the cell, so grouped tables
    average them per cell; ``n`` = 0 adds nothing."""
    if n <= 0:
        return rows
    from tsham.probes.state_utility import state_utility

    scores = state_utility(model, probe, level, n=n, seed=seed, device=device)
    return rows.assign(**{f"utility_{name}": value for name, value in scores.items()})


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (probe, level, policy, budget, and patch length and recipe where the rows have them): means over
    examples and seeds, the std over seeds of the mean RS, and the realised budget's p95 and max over examples
    (``kv_fraction_p95``, ``kv_fraction_max``)."""
    keys = ["probe", "level", "policy", "budget", *(k for k in ("patch_length", "recipe") if k in rows)]
    cells = rows.groupby(keys, dropna=False)  # oracle and event cells have no nominal budget (NaN)
    per_seed = rows.groupby(keys + ["seed"], dropna=False).mean(numeric_only=True).reset_index()
    table = per_seed.groupby(keys, dropna=False).mean(numeric_only=True).drop(columns=["seed", "example"],
                                                                              errors="ignore")
    table["RS_std_over_seeds"] = per_seed.groupby(keys, dropna=False)["RS"].std().fillna(0.0)
    table["kv_fraction_p95"] = cells["kv_fraction"].quantile(0.95)
    table["kv_fraction_max"] = cells["kv_fraction"].max()
    table["seeds"] = cells["seed"].nunique()
    table["examples"] = cells.size()
    return table.reset_index()


def frontier_plot(rows: pd.DataFrame, path) -> None:
    """Recall skill against the realised KV fraction and against KV bytes (where ``rows`` has them: a table of
    cells' means may not), one line per policy (the controls are single points), with the std over seeds as error
    bars. Raises ValueError on a table without rows."""
    if rows.empty:
        raise ValueError("frontier_plot: no rows to plot")
    xs = [(x, label) for x, label in (("kv_fraction", "realised KV fraction"), ("kv_bytes", "KV bytes")) if x in rows]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarise(rows)
    fig, axes = plt.subplots(1, len(xs), figsize=(max(8, 5 * len(xs)), 4), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (x, label) in zip(axes, xs, strict=True):
        for policy, group in table.groupby("policy"):
            group = group.sort_values(x)
            ax.errorbar(group[x], group["RS"], yerr=group["RS_std_over_seeds"], marker="o", capsize=2,
                        label=policy)
        ax.set_xscale("symlog", linthresh=1e-2 if x == "kv_fraction" else 1e2)  # 0 (pure GDN) stays on the axis
        ax.set_xlabel(label)
        ax.axhline(0.0, color="grey", lw=0.5)
    axes[0].set_ylabel("recall skill (RS)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{rows['probe'].iloc[0]} ({rows['level'].iloc[0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
