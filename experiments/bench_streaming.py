"""Streaming benchmark: latency per update and memory per stream, StreamingForecaster against recomputing.

    python -m tsham.experiments.bench_streaming [--contexts 2048 4096 ... 65536] [--streams 1 32] [--name NAME]

For each context length T (steps already seen) a stream is prefilled (one parallel forward, untimed); then
each timed update adds one patch of observations and asks for a forecast of ``--horizon`` steps. The baseline
recomputes the batch forecast over the whole history after each update (``model(history, H, align="start")``,
what a stateless forecaster must do). Both run the same model on the same ops (``TSHAM_BACKEND`` as set).
Memory per stream: the stream's state bytes (recurrent states, scratchpads, pending steps) against the
history a recomputing forecaster must keep, and on CUDA the peak allocation of each path.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from tsham.experiments.common import header, write_results

from tsham.forecasting import StreamingForecaster, TshamPipeline


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_bytes(fn, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(model, S: int, T: int, args, device: torch.device) -> dict:
    """One (streams, context) cell: a stream prefilled with T steps against recomputing over the history."""
    P = model.config.patch.patch_length
    g = torch.Generator().manual_seed(0)
    series = torch.sin(torch.arange(T + 40 * P) / 24.0) + 0.3 * torch.randn(S, T + 40 * P, generator=g)
    series = series.to(device)
    stream = StreamingForecaster(model, S, warmup=T, device=device)
    stream.update(series[:, :T, None])  # prefill: one parallel forward
    seen = {"t": T}

    def update_and_forecast():
        t = seen["t"]
        stream.update(series[:, t:t + P, None])
        seen["t"] = t + P
        return stream.forecast(args.horizon)

    def recompute():
        with torch.no_grad():
            return model(series[:, :seen["t"], None], args.horizon, align="start").quantiles.cpu()

    stream_s = timed(update_and_forecast, args.repeats, device)
    recompute_s = timed(recompute, max(3, args.repeats // 3), device)
    stream_peak, recompute_peak = peak_bytes(update_and_forecast, device), peak_bytes(recompute, device)
    return {
        "streams": S, "context": T, "stream_ms": 1e3 * stream_s, "recompute_ms": 1e3 * recompute_s,
        "speedup": recompute_s / stream_s, "state_KiB_per_stream": stream.memory_bytes() / S / 1024,
        "history_KiB_per_stream": seen["t"] * 4 / 1024,
        "stream_peak_MiB": None if stream_peak is None else stream_peak / 2**20,
        "recompute_peak_MiB": None if recompute_peak is None else recompute_peak / 2**20,
        "cached_tokens": int(max(int(s.counts.max()) for s in stream.states)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768, 65536])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = TshamPipeline.load(device=device).model
    rows = []
    for S in args.streams:
        for T in args.contexts:
            rows.append(measure(model, S, T, args, device))
            print(rows[-1], flush=True)
    lines = ["| streams | context steps | stream update+forecast ms | recompute ms | speed-up | state KiB / stream | "
             "history KiB / stream | peak MiB stream / recompute | scratchpad tokens (max layer) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "-" if r["stream_peak_MiB"] is None else f"{r['stream_peak_MiB']:.1f} / {r['recompute_peak_MiB']:.1f}"
        lines.append(f"| {r['streams']} | {r['context']} | {r['stream_ms']:.2f} | {r['recompute_ms']:.2f} | "
                     f"{r['speedup']:.1f}x | {r['state_KiB_per_stream']:.1f} | {r['history_KiB_per_stream']:.1f} | "
                     f"{peak} | {r['cached_tokens']} |")
    table = "\n".join(lines)
    print(table)
    meta = {**header(), "model": "tsham/assets/default", "backend": os.environ.get("TSHAM_BACKEND", "auto"),
            "update": f"one patch ({model.config.patch.patch_length} steps) + a {args.horizon}-step forecast; "
                      f"median of {args.repeats}"}
    name = args.name or f"bench_streaming_{device.type}"
    write_results(name, meta, rows, table)


if __name__ == "__main__":
    main()
