"""``tsham stream``: CSV rows in (a file or stdin, as they arrive), forecast rows out (as they are ready).

Input: a header line, then one row per (series, step) in time order per series: ``id`` (optional),
``timestamp``, ``target``, and the ``--past-covariates`` / ``--flags`` columns; empty = missing. Every
``--every`` observations of a series, its forecast for the next ``--horizon`` steps is written: ``id``,
``origin`` (last observed timestamp), ``timestamp``, one column per quantile, ``predictions`` (the median).
With ``--state DIR`` each series' stream resumes from ``DIR/<id>`` and is saved there at the end.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tsham.forecasting.pipeline import TshamPipeline
from tsham.forecasting.streaming import StreamingForecaster


def _number(text: str, column: str, line: int) -> float:
    if text is None or text.strip() == "":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {line}: column {column!r} holds {text!r}, not a number") from None


def _safe_name(item: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in item) or "series"


def run_stream(args) -> int:
    """Reads rows from ``args.input`` (``-`` = stdin) and writes forecasts to ``args.output`` (``-`` = stdout)."""
    pipe = TshamPipeline.load(args.model)
    quantiles = pipe.quantiles
    source = sys.stdin if args.input == "-" else open(args.input, newline="")  # noqa: SIM115 - closed below
    sink = sys.stdout if args.output == "-" else open(args.output, "w", newline="")  # noqa: SIM115
    streams: dict[str, StreamingForecaster] = {}
    seen: dict[str, list] = {}  # per series: observations since the last forecast, last two timestamps
    state_dir = Path(args.state) if args.state else None
    try:
        reader = csv.DictReader(source)
        needed = [args.timestamp_column, args.target, *args.past_covariates, *args.flags]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"columns {missing} not in the input header {reader.fieldnames}")
        writer = csv.writer(sink)
        writer.writerow(["id", "origin", "timestamp", *map(str, quantiles), "predictions"])
        for line, row in enumerate(reader, start=2):
            item = row.get(args.id_column) or "series"
            if item not in streams:
                saved = state_dir / _safe_name(item) if state_dir else None
                streams[item] = (StreamingForecaster.load(saved, pipe.model) if saved and saved.is_dir() else
                                 StreamingForecaster(pipe.model, 1, 1, len(args.past_covariates), 0, len(args.flags)))
                seen[item] = [0, []]
            stream = streams[item]
            target, past, flags = (np.array([[_number(row[c], c, line) for c in cols]], np.float32) if cols else None
                                   for cols in ([args.target], args.past_covariates, args.flags))
            stream.update(target, past, None, flags)
            stamps = seen[item][1]
            stamps.append(pd.Timestamp(row[args.timestamp_column]))
            del stamps[:-2]
            seen[item][0] += 1
            if seen[item][0] % args.every:
                continue
            q = stream.forecast(args.horizon)[0, 0]  # (Q, H)
            step = pd.tseries.frequencies.to_offset(args.freq) if args.freq else (
                stamps[-1] - stamps[-2] if len(stamps) == 2 else None)
            if step is None:
                raise ValueError(f"series {item!r}: cannot tell the step between timestamps yet; pass --freq")
            future = [stamps[-1] + (i + 1) * step for i in range(args.horizon)]
            median = q[quantiles.index(0.5)]
            for i, stamp in enumerate(future):
                writer.writerow([item, stamps[-1], stamp, *(f"{v:.6g}" for v in q[:, i]), f"{median[i]:.6g}"])
            sink.flush()
    finally:
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
    if state_dir:
        for item, stream in streams.items():
            stream.save(state_dir / _safe_name(item))
    print(f"streamed {sum(s.steps for s in streams.values())} rows of {len(streams)} series", file=sys.stderr)
    return 0


def add_stream_parser(sub) -> None:
    st = sub.add_parser("stream", help="forecast CSV rows as they arrive (file or stdin), writing forecasts as it goes")
    st.add_argument("--model", help="checkpoint folder; default: the shipped model")
    st.add_argument("--input", default="-", help="CSV file, or - for stdin (default)")
    st.add_argument("--output", default="-", help="CSV file, or - for stdout (default)")
    st.add_argument("--id-column", default="id", help="series id column (absent: one series)")
    st.add_argument("--timestamp-column", default="timestamp")
    st.add_argument("--target", default="target")
    st.add_argument("--past-covariates", nargs="*", default=[], help="columns known up to now")
    st.add_argument("--flags", nargs="*", default=[], help="0/1 event columns")
    st.add_argument("--horizon", type=int, required=True)
    st.add_argument("--every", type=int, default=1, help="forecast after every N observations of a series")
    st.add_argument("--freq", help="pandas frequency of the timestamps (default: the last step)")
    st.add_argument("--state", help="folder to resume streams from and save them to")
    st.set_defaults(func=run_stream)
