"""Where along the context a model's routers put their scratchpad slots, on real series.

    python -m tsham.experiments.routing_positions            # the shipped default on the GIFT contexts (CPU)
    python -m tsham.experiments.routing_positions --model PATH --budget 0.1

A surprise router scores a token by the recurrent state's relative prediction error, and a state that has just
started (empty) mispredicts everything: the routing benchmark's maps (#7) showed surprise and uncertainty keeping
84-100% of their tokens in the first quarter of the context. This measures it on any checkpoint: the share of the
routed context tokens in each tenth of the context, per configuration, at the checkpoint's own thresholds and at a
calibrated budget. Uniform routing puts 0.10 in every tenth.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tsham.model import TshamModel


@torch.no_grad()
def position_shares(model: TshamModel, x: torch.Tensor, horizon: int, bins: int = 10) -> tuple[np.ndarray, float]:
    """The share of the routed context tokens (routed by any head) that falls in each of ``bins`` equal stretches
    of the context, per layer: ``[layers, bins]`` (rows sum to 1, or 0 where a layer routed nothing), and the
    realised KV fraction; ``x`` ``[B, T]`` or ``[B, T, C]`` full-length contexts (no missing values)."""
    out = model(x, horizon)
    return routed_shares(model, out, bins), float(out.kv_fraction)


def routed_shares(model: TshamModel, out, bins: int = 10) -> np.ndarray:
    """:func:`position_shares` of a forward already run: ``out`` is ``model``'s :class:`TshamOutput` on full-length
    contexts; returns the ``[layers, bins]`` shares."""
    n = out.num_context_patches
    if n < bins:
        raise ValueError(f"position_shares: {n} context tokens cannot fill {bins} bins")
    edges = np.linspace(0, n, bins + 1).round().astype(int)
    shares = []
    for block, layer in zip(model.stack.blocks, out.layers, strict=True):
        router = block.mixer.router
        held = np.zeros(n)
        for row in layer.mask[:, :n].any(-1):
            held[kept_tokens(torch.nonzero(row).flatten().tolist(), router.cap, router.sinks)] += 1
        counts = np.add.reduceat(held, edges[:-1])
        shares.append(counts / max(counts.sum(), 1.0))
    return np.stack(shares)


def kept_tokens(routed: list[int], cap: int | None, sinks: int) -> list[int]:
    """The routed token positions (ascending) a stream still holds at the end: all of them, or under a cap (a
    recency window) the first ``sinks`` and the last ``cap``."""
    if cap is not None and len(routed) > cap + sinks:
        return routed[:sinks] + routed[-cap:]
    return routed


def gift_contexts(length: int, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per offline GIFT-Eval configuration, up to ``count`` contexts of exactly ``length`` steps (the last steps of
    test contexts at least that long, drawn with ``seed``): ``{"name/term": [N, length]}``; configurations with
    no long-enough context are left out."""
    from tsham.experiments.zero_shot import contexts

    from tsham.evaluation import CONFIGS, gift_eval_data

    out = {}
    for name, term in CONFIGS:
        data, _, _ = gift_eval_data(name, term)
        long = [c[-length:] for c in contexts(data) if len(c) >= length]
        if long:
            picks = np.random.default_rng(seed).permutation(len(long))[:count]
            out[f"{name}/{term}"] = np.stack([long[i] for i in picks]).astype(np.float32)
    return out


def main(argv=None) -> None:
    from tsham.experiments.common import header, write_results

    from tsham.forecasting import TshamPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--budget", type=float, default=0.1, help="the calibrated KV budget also measured")
    parser.add_argument("--series", type=int, default=32, help="contexts per configuration")
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--name", default="routing_positions_default_cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    pipe = TshamPipeline.load(args.model)
    model = pipe.model
    data = gift_contexts(model.config.context_length, args.series)
    if not data:
        raise SystemExit(f"no GIFT configuration has a context of {model.config.context_length} steps")
    rows, lines = [], ["| configuration | thresholds | realised KV | share of the routed tokens per tenth of the "
                       "context, first to last (mean over layers) |", "|---|---|---|---|"]
    for setting in ("shipped", f"calibrated to {args.budget:g}"):
        if setting != "shipped":  # every configuration's contexts together set one threshold per router
            pipe.set_kv_budget(args.budget, [c for x in data.values() for c in x], args.horizon)
        for config, x in data.items():
            shares, kv = position_shares(model, torch.from_numpy(x), args.horizon)
            mean = shares.mean(0)
            rows.append({"configuration": config, "thresholds": setting, "kv_realised": kv,
                         "shares_per_layer": shares.tolist()})
            lines.append(f"| {config} | {setting} | {kv:.3f} | " + " ".join(f"{v:.2f}" for v in mean) + " |")
    meta = {**header(), "model": args.model or "the shipped default",
            "router": model.config.ham.router, "contexts": f"up to {args.series} per configuration, the last "
            f"{model.config.context_length} steps of test contexts at least that long"}
    print(write_results(args.name, meta, rows, "\n".join(lines)))


if __name__ == "__main__":
    main()
