"""``tsham stream``: CSV rows in (a file or stdin, as they arrive), forecast rows out (as they are ready).

Input: a header line, then one row per (series, step) in time order per series: ``id`` (optional),
``timestamp``, ``target``, and the ``--past-covariates`` / ``--flags`` columns; empty = missing. Every
``--every`` observations of a series, its forecast for the next ``--horizon`` steps is written: ``id``,
``origin`` (last observed timestamp), ``timestamp``, one column per quantile, ``predictions`` (the median).
With ``--state DIR`` each series' stream resumes from ``DIR/<id>`` (percent-encoded) and is saved there when the
input ends, on an error, and on Ctrl-C or SIGTERM (an interrupt lands between rows, never inside an update). A
resumed series skips the rows at or before its saved last timestamp, so the same file can be replayed. With
``--freq`` every step must follow the previous one at that frequency (missing steps are rows with an empty
target); without it the step is the difference of the first two timestamps, and every later step must equal it
(fixed-length steps: hours, days; calendar months or years need ``--freq``). Whole-number timestamps (``7``,
``+7``, ``7.0``) are integer time steps (``--freq``, if given, is then the step, e.g. ``1``), as in ``tsham
forecast``; a series resumed with dates, or a ``--freq`` that is a pandas frequency, reads them as dates
(``20240130`` is the 30th of January).
"""

from __future__ import annotations

import csv
import re
import signal
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from tsham.checkpoint import read_json
from tsham.forecasting.pipeline import TshamPipeline
from tsham.forecasting.streaming import StreamingForecaster, resume_folder
from tsham.io import check_outputs, frequency


def _number(text: str, column: str, line: int) -> float:
    if text is None or text.strip() == "":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {line}: column {column!r} holds {text!r}, not a number") from None


def state_folder(state_dir: Path, item: str) -> Path:
    """Where series ``item``'s stream lives under ``--state``: its id percent-encoded, so two ids never share a
    folder and none leaves ``state_dir`` (ids of letters, digits, ``-_.`` keep their name)."""
    name = quote(item, safe="-_.~") if item not in (".", "..") else item.replace(".", "%2E")
    return state_dir / name


class _Series:
    """One series of the stream command: its forecaster, observations since its last forecast and its last two
    timestamps (saved beside the stream state, so a resumed run keeps its cadence and step)."""

    def __init__(self, stream: StreamingForecaster, since: int = 0, stamps: list | None = None):
        self.stream, self.since, self.stamps = stream, since, stamps or []
        self.resumed_at = self.stamps[-1] if self.stamps else None  # rows up to here were read by an earlier run

    @classmethod
    def open(cls, folder: Path | None, pipe: TshamPipeline, columns: dict[str, list[str]]) -> _Series:
        """A new stream, or the one saved in ``folder``; ``columns`` (target, past covariates, flags by name)
        must be the ones it was saved with."""
        layout = (len(columns["past_covariates"]), len(columns["flags"]))
        folder = resume_folder(folder) if folder is not None else None
        if folder is None or not folder.is_dir():
            return cls(StreamingForecaster(pipe.model, 1, 1, layout[0], 0, layout[1]))
        cli = read_json(folder / "cli.json") if (folder / "cli.json").is_file() else {}
        if cli.get("columns", columns) != columns:  # older states did not record them
            raise ValueError(f"the stream saved in {folder} reads the columns {cli['columns']}; this run gives "
                             f"{columns}: resume it with the same --target, --past-covariates and --flags")
        return cls(StreamingForecaster.load(folder, pipe.model), cli.get("since", 0),
                   [t if isinstance(t, int) else pd.Timestamp(t) for t in cli.get("stamps", [])])

    def save(self, folder: Path, columns: dict[str, list[str]]) -> None:
        cli = {"since": self.since, "stamps": [t if isinstance(t, int) else str(t) for t in self.stamps],
               "columns": columns}
        self.stream.save(folder, extra={"cli.json": cli})  # one folder, swapped in whole


def run_stream(args) -> int:
    """Reads rows from ``args.input`` (``-`` = stdin) and writes forecasts to ``args.output`` (``-`` = stdout).
    With ``--state`` every stream is saved when the input ends, on an error and on Ctrl-C or SIGTERM."""
    pipe = TshamPipeline.load(args.model)
    quantiles = pipe.quantiles
    if args.horizon > pipe.model.config.max_horizon:  # before any row is read (and saved as read)
        raise ValueError(f"--horizon {args.horizon} is longer than the model forecasts "
                         f"({pipe.model.config.max_horizon})")
    dated_freq = bool(args.freq) and not args.freq.isdigit()  # a pandas frequency: the timestamps are dates
    if dated_freq:  # a bad frequency fails before any row is read
        frequency(args.freq)
    columns = {"target": [args.target], "past_covariates": list(args.past_covariates), "flags": list(args.flags)}
    check_outputs(args.output)  # the folder named, not the OS's errno
    if args.input != "-" and not Path(args.input).is_file():
        raise FileNotFoundError(f"--input {args.input} not found")
    source = sys.stdin if args.input == "-" else open(args.input, newline="")  # noqa: SIM115 - closed below
    sink = sys.stdout if args.output == "-" else open(args.output, "w", newline="")  # noqa: SIM115
    series: dict[str, _Series] = {}
    state_dir = Path(args.state) if args.state else None
    rows_read = skipped = 0
    guard = _Guard()  # Ctrl-C and `kill` (which ends a `tail -f | tsham stream` alike) wait for the row under way
    previous = {sig: signal.signal(sig, guard.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reader = csv.DictReader(source)
        if reader.fieldnames is None:
            raise ValueError("the input is empty: it needs a header line (timestamp, target, ...) and then rows")
        needed = [args.timestamp_column, args.target, *args.past_covariates, *args.flags]
        missing = [c for c in needed if c not in reader.fieldnames]
        if missing:
            raise ValueError(f"columns {missing} not in the input header {reader.fieldnames}")
        writer = csv.writer(sink)
        writer.writerow(["id", "origin", "timestamp", *map(str, quantiles), "predictions"])
        for line, row in enumerate(reader, start=2):
            item = row.get(args.id_column) or "series"
            if item not in series:
                series[item] = _Series.open(state_folder(state_dir, item) if state_dir else None, pipe, columns)
            s = series[item]
            dates = bool(s.stamps and not isinstance(s.stamps[-1], int)) or dated_freq
            stamp = _timestamp(row[args.timestamp_column], args.timestamp_column, line, dates)
            if s.stamps and isinstance(stamp, int) != isinstance(s.stamps[-1], int):
                raise ValueError(f"line {line}: series {item!r} mixes integer time steps and dates ({stamp} after "
                                 f"{s.stamps[-1]})")
            freq = _freq(args.freq, stamp) if args.freq else None
            if s.resumed_at is not None and stamp <= s.resumed_at:  # a replay of rows an earlier run read
                skipped += 1
                continue
            if s.stamps and stamp <= s.stamps[-1]:
                raise ValueError(f"line {line}: series {item!r} goes back in time ({stamp} after {s.stamps[-1]}); "
                                 "give each series' rows in time order, once each")
            if freq is not None and s.stamps and stamp != s.stamps[-1] + freq:
                raise ValueError(f"line {line}: series {item!r} jumps from {s.stamps[-1]} to {stamp}, not one step "
                                 f"of --freq {args.freq}; give missing steps as rows with an empty target")
            if freq is None and len(s.stamps) == 2 and stamp - s.stamps[-1] != s.stamps[-1] - s.stamps[-2]:
                # the step is read from the timestamps: a gap would be taken for one step and stamp every forecast
                # after it with the gap's length
                raise ValueError(f"line {line}: series {item!r} jumps from {s.stamps[-1]} to {stamp}, where its steps "
                                 f"were {s.stamps[-1] - s.stamps[-2]}; give missing steps as rows with an empty "
                                 "target, and --freq (e.g. h) for steps of calendar length (months, years)")
            target, past, flags = (np.array([[_number(row[c], c, line) for c in cols]], np.float32) if cols else None
                                   for cols in ([args.target], args.past_covariates, args.flags))
            with guard:  # the stream and its bookkeeping change together, or not at all
                s.stream.update(target, past, None, flags)
                rows_read += 1
                s.stamps = [*s.stamps, stamp][-2:]
                s.since += 1
            if s.since < args.every:
                continue
            step = freq if freq is not None else (s.stamps[-1] - s.stamps[-2] if len(s.stamps) == 2 else None)
            observed = bool((s.stream.low <= s.stream.high).all())  # a target value seen so far
            if step is None or not observed:  # its first row without --freq, or nothing observed yet: wait
                continue
            s.since = 0
            q = s.stream.forecast(args.horizon)[0, 0]  # (Q, H)
            future = [s.stamps[-1] + (i + 1) * step for i in range(args.horizon)]
            median = q[quantiles.index(0.5)]
            for i, when in enumerate(future):
                writer.writerow([item, s.stamps[-1], when, *(f"{v:.6g}" for v in q[:, i]), f"{median[i]:.6g}"])
            sink.flush()
    finally:
        guard.busy = True  # a second signal waits for the saves below instead of cutting one short
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
        if state_dir:  # also after an error or an interrupt: what was read is not lost
            for item, s in series.items():
                s.save(state_folder(state_dir, item), columns)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"streamed {rows_read} rows of {len(series)} series" + (f" (skipped {skipped} rows read before)"
                                                                  if skipped else ""), file=sys.stderr)
    return 0


class _Guard:
    """Delays Ctrl-C / SIGTERM while a row is being applied (``with guard:``), so an interrupt never saves a
    stream whose layers stepped only part way; outside, e.g. while waiting on stdin, it interrupts at once."""

    def __init__(self):
        self.busy, self.pending = False, False

    def handle(self, signum, frame):
        if self.busy:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self):
        self.busy = True

    def __exit__(self, *exc):
        self.busy = False
        if self.pending and exc[0] is None:
            raise KeyboardInterrupt


WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+(\.0*)?\s*", re.ASCII)


def _timestamp(text: str, column: str, line: int, dates: bool = False) -> pd.Timestamp | int:
    """A timestamp cell: a whole number (``7``, ``+7``, ``7.0``) is an integer time step unless ``dates`` (the
    series is dated), anything else must parse as a date."""
    if not dates and WHOLE_NUMBER.fullmatch(text):
        return int(float(text))
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        hint = (" (the series is dated, or --freq is a pandas frequency: integer time steps take a whole-number "
                "--freq)" if WHOLE_NUMBER.fullmatch(text) else "")
        raise ValueError(f"line {line}: column {column!r} holds {text!r}, not a timestamp{hint}")
    return stamp


def _freq(text: str, stamp: pd.Timestamp | int) -> pd.DateOffset | int:
    """``--freq`` for a series whose timestamps are like ``stamp``: a pandas offset for dates, the whole step for
    integer time steps."""
    if isinstance(stamp, int):
        if not (text.isascii() and text.isdigit() and int(text) >= 1):
            raise ValueError(f"the timestamps are integer time steps, so --freq must be the step, a whole number >= 1 "
                             f"(e.g. 1); got {text!r}")
        return int(text)
    if text.isdigit():
        raise ValueError(f"--freq {text} is the step of integer time steps, but these timestamps are dates: give a "
                         "pandas frequency (e.g. h, D, MS)")
    return frequency(text)


def add_stream_parser(sub) -> None:
    from tsham.cli import whole_number  # the commands' one whole-number type

    st = sub.add_parser("stream", help="forecast CSV rows as they arrive (file or stdin), writing forecasts as it goes")
    st.add_argument("--model", help="checkpoint folder; default: the shipped model")
    st.add_argument("--input", default="-", help="CSV file, or - for stdin (default)")
    st.add_argument("--output", default="-", help="CSV file, or - for stdout (default)")
    st.add_argument("--id-column", default="id", help="series id column (absent: one series)")
    st.add_argument("--timestamp-column", default="timestamp")
    st.add_argument("--target", default="target")
    st.add_argument("--past-covariates", nargs="*", default=[], help="columns known up to now")
    st.add_argument("--flags", nargs="*", default=[], help="0/1 event columns")
    st.add_argument("--horizon", type=whole_number, required=True)
    st.add_argument("--every", type=whole_number, default=1, help="forecast after every N observations of a series "
                    "(the first once its step is known: its second row, or its first with --freq)")
    st.add_argument("--freq", help="pandas frequency of the timestamps, or the step of integer time steps (default: "
                    "the last step)")
    st.add_argument("--state", help="folder to resume streams from and save them to")
    st.set_defaults(func=run_stream)
