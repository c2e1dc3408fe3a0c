"""Forward+backward time of HamLayer (several routers, 10% KV) against GDN-only and attention layers, on CPU.

    python -m tsham.experiments.bench_layer_cpu [--lengths 256 1024 4096] [--repeats 5]

Every layer is timed in the same run on the same inputs; the table gives milliseconds and the ratio to the
GDN-only layer and to the attention layer. Routers with a target fraction are warmed up (controller in
training mode) before timing, and timed in training mode (the controller's cost included).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tsham.experiments.baseline_layers import AttentionLayer, GdnLayer
from tsham.experiments.common import header, write_results

from tsham.ham import HamConfig, HamLayer

# A fast controller (0.5) so that 20 warm-up forwards reach the budget; the default (0.1) suits training runs.
ROUTERS = {
    "surprise": {"target": 0.1, "controller_lr": 0.5},
    "learned": {"target": 0.1, "controller_lr": 0.5},
    "random": {"fraction": 0.1},
    "none": {},
}


def time_fwd_bwd(layer, x, repeats: int) -> float:
    """Median milliseconds of forward + backward (one untimed warm-up call first)."""
    times = []
    for i in range(repeats + 1):
        x.grad = None
        start = time.perf_counter()
        out = layer(x)
        (out[0] if isinstance(out, tuple) else out).float().pow(2).mean().backward()
        if i:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run(lengths: list[int], repeats: int, batch: int, d_model: int, heads: int, head_dim: int) -> list[dict]:
    rows = []
    for T in lengths:
        torch.manual_seed(0)
        x = torch.randn(batch, T, d_model, requires_grad=True)
        base = HamConfig(d_model=d_model, num_heads=heads, head_dim=head_dim)
        layers = {"gdn only": GdnLayer(base), "attention": AttentionLayer(base)}
        for name, kwargs in ROUTERS.items():
            layers[f"ham/{name}"] = HamLayer(HamConfig(**{**base.to_dict(), "router": name, "router_kwargs": kwargs}))
        fractions = {}
        for name, layer in layers.items():
            if type(layer) is HamLayer:  # GdnLayer subclasses it but routes nothing
                with torch.no_grad():
                    for _ in range(20):  # let the threshold controller settle
                        layer(x)
                fractions[name] = layer(x)[1].realised.item()
        times = {name: time_fwd_bwd(layer, x, repeats) for name, layer in layers.items()}
        for name, ms in times.items():
            rows.append({"T": T, "layer": name, "ms": ms, "kv_fraction": fractions.get(name),
                         "vs_gdn": ms / times["gdn only"], "vs_attention": ms / times["attention"]})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| T | layer | KV fraction | fwd+bwd ms | / GDN only | / attention |", "|---|---|---|---|---|---|"]
    for r in rows:
        frac = "-" if r["kv_fraction"] is None else f"{r['kv_fraction']:.3f}"
        lines.append(f"| {r['T']} | {r['layer']} | {frac} | {r['ms']:.1f} | {r['vs_gdn']:.2f} | "
                     f"{r['vs_attention']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--no-save", action="store_true", help="print only; do not write experiments/results/")
    args = parser.parse_args()
    meta = {**header(), "shape": f"B={args.batch} D={args.d_model} H={args.heads} K=V={args.head_dim}, fp32",
            "repeats": args.repeats}
    rows = run(args.lengths, args.repeats, args.batch, args.d_model, args.heads, args.head_dim)
    table = format_table(rows)
    print("\n".join(f"{k}: {v}" for k, v in meta.items()))
    print(table)
    if not args.no_save:
        print(f"written: {write_results('bench_layer_cpu', meta, rows, table)}")


if __name__ == "__main__":
    main()
