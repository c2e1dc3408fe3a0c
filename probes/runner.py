"""Probe runner: train (or load) a forecaster per (policy, budget), score it on a probe, one row per example.

    from tsham.probes.runner import run_probe
    rows = run_probe("delayed_action", level="easy", policies=["surprise", "random"], budgets=[0.05, 0.1],
                     seeds=[0], n_test=256, train_steps=300)       # pandas DataFrame, one row per example

Controls come with every sweep: pure GDN (budget 0) and full attention (budget 1) are added to the budgets,
``random`` routes the same budget by chance, and ``oracle`` routes exactly the needle's patch tokens. Each row
holds the recall skill against the needle-ablated twin (PROBES.md), the MSE of both forecasts, the realised KV
fraction and the capture rate (share of needle tokens the routers kept, averaged over layers and heads).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tsham.probes.generators import PROBES, ProbeBatch
from tsham.probes.metrics import codebook_accuracy, recall_skill

from tsham.config import TshamConfig
from tsham.ham import calibrate_kv_budget
from tsham.model import TshamModel

POLICIES = ("surprise", "uncertainty", "learned", "random", "event", "recency", "oracle")
TRAIN_SEED_OFFSET = 1_000_003  # training batches never reuse a test seed


def probe_config(policy: str, budget: float, patch_length: int = 8, d_model: int = 32, n_layers: int = 2,
                 context_length: int = 1024) -> TshamConfig:
    """A small forecaster whose HAM layers route with ``policy`` at ``budget`` (0: pure GDN, 1: full attention)."""
    if budget == 0.0:
        policy, kwargs = "none", {}
    elif budget == 1.0:
        policy, kwargs = "all", {}
    elif policy == "random":
        kwargs = {"fraction": budget}
    elif policy in ("oracle", "event"):
        kwargs = {}  # the needles / the flags decide; the budget is what they realise
    elif policy == "recency":
        kwargs = {"window": max(1, round(budget * context_length / patch_length)), "sinks": 1}
    elif policy in ("surprise", "uncertainty", "learned"):
        kwargs = {"target": budget}
    else:
        raise ValueError(f"unknown probe policy {policy!r}; known: {POLICIES}")
    config = TshamConfig.small(d_model=d_model, patch_length=patch_length, n_layers=n_layers, num_heads=2,
                               head_dim=d_model // 2, router=policy, router_kwargs=kwargs)
    config.context_length, config.align = context_length, "start"
    return config


def model_inputs(batch: ProbeBatch, context: np.ndarray, device) -> dict:
    """TshamModel arguments for a probe context ``[N, L, C]``: target channels, the rest as past covariates,
    the flags (known ahead), and the needle steps for an oracle router."""
    others = [c for c in range(context.shape[2]) if c not in batch.target_channels]
    t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return {
        "past_target": t(context[..., batch.target_channels]),
        "past_covariates": t(context[..., others]) if others else None,
        "event_flags": t(batch.flags) if batch.flags.shape[2] else None,
        "oracle_steps": torch.as_tensor(batch.needles, device=device),
    }


def probe_forward(model: TshamModel, batch: ProbeBatch, context: np.ndarray, device):
    """The model's forecast (a :class:`TshamOutput`, ``quantiles [N, Ct, Q, H]``) for a probe context
    ``[N, L, C]``; the needle steps reach the routers only when the model routes with the oracle."""
    kwargs = model_inputs(batch, context, device)
    if model.config.ham.router != "oracle":
        kwargs.pop("oracle_steps")
    return model(horizon=batch.target.shape[1], **kwargs)


def train_probe_model(probe: str, level: str, config: TshamConfig, steps: int, batch_size: int = 16,
                      lr: float = 2e-3, seed: int = 0, device: str = "cpu") -> TshamModel:
    """Trains ``config`` on fresh batches of the probe (seeds disjoint from the test seeds); returns it in eval."""
    torch.manual_seed(seed)
    model = TshamModel(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for step in range(steps):
        batch = PROBES[probe](batch_size, level, seed=TRAIN_SEED_OFFSET + seed * steps + step)
        out = probe_forward(model, batch, batch.context, device)
        loss = model.loss(out, torch.as_tensor(batch.target, device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()


@torch.no_grad()
def evaluate_probe(model: TshamModel, probe: str, level: str, n: int, seed: int, labels: dict,
                   device: str = "cpu", batch_size: int = 64) -> pd.DataFrame:
    """One row per test example: recall skill against the twin, MSEs, realised KV fraction, capture rate
    (and, for probe C, codebook accuracy and the channel-swap control's recall skill)."""
    batch = PROBES[probe](n, level, seed=seed)
    rows = []
    for start in range(0, n, batch_size):
        shared = ("target_channels", "codebook")  # per probe, not per example
        part = ProbeBatch(*(v if v is None or k in shared else v[start:start + batch_size]
                            for k, v in vars(batch).items()))
        out = probe_forward(model, part, part.context, device)
        pred = out.median.permute(0, 2, 1).cpu().numpy()  # (n, H, Ct)
        twin = probe_forward(model, part, part.twin_context, device).median.permute(0, 2, 1).cpu().numpy()
        rs = recall_skill(pred, twin, part.target)
        P = model.config.patch.patch_length
        needle_tokens = torch.as_tensor(part.needles, device=device).unflatten(1, (-1, P)).any(2) if \
            part.needles.shape[1] % P == 0 else None
        capture = np.full(len(pred), np.nan)
        if needle_tokens is not None:
            kept = torch.stack([d.mask[:, :needle_tokens.shape[1]].float().mean(-1) for d in out.layers]).mean(0)
            capture = ((kept * needle_tokens).sum(1) / needle_tokens.sum(1).clamp_min(1)).cpu().numpy()
        extra = {}
        if part.codebook is not None:
            extra["codebook_accuracy"] = codebook_accuracy(pred, part.codebook, part.answers)
        if part.control_context is not None:
            control = probe_forward(model, part, part.control_context, device).median.permute(0, 2, 1).cpu().numpy()
            extra["control_RS"] = recall_skill(control, twin, part.target)
        for i in range(len(pred)):
            rows.append({**labels, "example": start + i, "RS": rs[i],
                         "mse": float(((pred[i] - part.target[i]) ** 2).mean()),
                         "mse_twin": float(((twin[i] - part.target[i]) ** 2).mean()),
                         "kv_realised": float(out.kv_fraction), "capture_rate": float(capture[i]),
                         **{k: float(v[i]) for k, v in extra.items()}})
    return pd.DataFrame(rows)


def run_probe(probe: str, level: str = "easy", policies: Sequence[str] = ("surprise", "random", "oracle"),
              budgets: Sequence[float] = (0.05, 0.1), seeds: Sequence[int] = (0,), n_test: int = 256,
              train_steps: int = 300, model: TshamModel | None = None, device: str = "cpu", train_batch: int = 16,
              lr: float = 2e-3, **config_kwargs) -> pd.DataFrame:
    """The sweep: per seed, (policy, budget) pairs plus the pure-GDN and full-attention controls.

    With ``model`` (a trained checkpoint) nothing is trained: each budget is calibrated on the probe's contexts
    (:func:`calibrate_kv_budget`) and the policy column is the model's own router.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; known: {sorted(PROBES)}")
    frames = []
    for seed in seeds:
        test_seed = 10_000 + seed
        if model is not None:
            sample = PROBES[probe](min(n_test, 64), level, seed=test_seed)
            for budget in sorted({0.0, *budgets, 1.0}):
                calibrate_kv_budget(model, budget, lambda b=sample: probe_forward(model, b, b.context, device))
                labels = {"probe": probe, "level": level, "policy": model.config.ham.router, "budget": budget,
                          "seed": seed}
                frames.append(evaluate_probe(model, probe, level, n_test, test_seed, labels, device))
            continue
        cells = [("none", 0.0), ("all", 1.0)] + [(p, b) for p in policies for b in budgets]
        for policy, budget in cells:
            config = probe_config(policy, budget, **config_kwargs)
            trained = train_probe_model(probe, level, config, train_steps, train_batch, lr, seed=seed, device=device)
            labels = {"probe": probe, "level": level, "policy": policy, "budget": budget, "seed": seed}
            frames.append(evaluate_probe(trained, probe, level, n_test, test_seed, labels, device))
    return pd.concat(frames, ignore_index=True)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean per (probe, level, policy, budget) over examples and seeds, with the std over seeds of the mean RS."""
    keys = ["probe", "level", "policy", "budget"]
    per_seed = rows.groupby(keys + ["seed"]).mean(numeric_only=True).reset_index()
    table = per_seed.groupby(keys).mean(numeric_only=True).drop(columns=["seed", "example"])
    table["RS_std_over_seeds"] = per_seed.groupby(keys)["RS"].std().fillna(0.0)
    return table.reset_index()


def frontier_plot(rows: pd.DataFrame, path) -> None:
    """Recall skill against the realised KV fraction, one line per policy (controls as points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarise(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, group in table.groupby("policy"):
        group = group.sort_values("kv_realised")
        ax.plot(group["kv_realised"], group["RS"], marker="o", label=policy)
    ax.set(xscale="symlog", xlabel="realised KV fraction", ylabel="recall skill (RS)",
           title=f"{rows['probe'].iloc[0]} ({rows['level'].iloc[0]})")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
