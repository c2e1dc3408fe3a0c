"""Reading users' tables (CSV or parquet) into series, with errors that name the file and the column."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def frequency(text: str | pd.DateOffset) -> pd.DateOffset:
    """A pandas frequency (``"h"``, ``"D"``, ``"MS"``, an offset) as an offset; ValueError naming ``text`` if pandas
    does not know it (without pandas' nested message or its deprecation warnings about the spelling)."""
    if isinstance(text, pd.DateOffset):
        return text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return pd.tseries.frequencies.to_offset(text)
        except ValueError:
            raise ValueError(f"unknown frequency {text!r}: give a pandas frequency such as h, 15min, D, W, MS, "
                             "QS or YS") from None


def read_table(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """CSV or parquet by extension; or, for the name of a wheel-embedded dataset (``sm_co2`` ...), that dataset
    in long format (id = column name, timestamp, target). A CSV's ``id_column`` is read as text, so that an id
    such as ``007`` keeps its zeros (and does not depend on what the other ids look like)."""
    from tsham.datasets import WHEEL_SETS, load

    path = Path(path)
    if not path.is_file() and str(path) in WHEEL_SETS:
        wide = load(str(path)).select_dtypes("number")
        return (wide.rename_axis("timestamp").reset_index()
                .melt(id_vars="timestamp", var_name="id", value_name="target")[["id", "timestamp", "target"]])
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} not found (nor a bundled dataset name: "
                                f"{', '.join(sorted(WHEEL_SETS))})")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as err:
            raise ValueError(f"reading {path} needs a parquet engine (pip install 'tsham[parquet]', or pyarrow): "
                             f"{err}") from None
    try:  # pandas' own words name neither the file nor what it expected
        header = pd.read_csv(path, nrows=0).columns
        return pd.read_csv(path, dtype={id_column: str} if id_column in header else None)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: expected a CSV with a header row (e.g. id,timestamp,target)") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{path} is not a readable CSV table ({err}); expected comma-separated columns with a "
                         "header row, or a .parquet file") from None


def check_outputs(*paths: str | None, plot: str | None = None) -> None:
    """Before the work runs, not after: every output file's folder exists, none is a folder or another output's
    path, and the ``plot``'s suffix is a format matplotlib writes. ``None`` paths (and ``-``, stdout) are skipped.
    Raises FileNotFoundError or ValueError naming the path."""
    given = [Path(p) for p in (*paths, plot) if p and p != "-"]
    for path in given:
        if not path.resolve().parent.is_dir():
            raise FileNotFoundError(f"the folder of {path} does not exist")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give a file name")
    if len({p.resolve() for p in given}) < len(given):
        raise ValueError(f"two outputs have the same path ({', '.join(map(str, given))}): one would replace the other")
    if plot:
        from matplotlib.figure import Figure

        formats = Figure().canvas.get_supported_filetypes()
        suffix = Path(plot).suffix
        if suffix.lower().lstrip(".") not in formats:
            raise ValueError(f"--plot {plot}: matplotlib cannot write {suffix or 'a file without a suffix'}; use one "
                             f"of {', '.join('.' + f for f in sorted(formats))}")


def long_frame(df: pd.DataFrame, id_column: str, timestamp_column: str, target: str) -> pd.DataFrame:
    """Checks the columns of a long table; a table without ``id_column`` is one series named 'series'."""
    missing = [c for c in (timestamp_column, target) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not found; the table has {list(df.columns)} (set --timestamp-column / "
                         f"--target)")
    if id_column not in df.columns:
        df = df.assign(**{id_column: "series"})
    return df


def long_series(df: pd.DataFrame, id_column: str, timestamp_column: str, target: str,
                columns: tuple[str, ...] | list[str] = ()) -> list[tuple[object, pd.DataFrame]]:
    """The series of a long table, checked: ``(id, rows)`` per series in id order, rows sorted by time.

    Timestamps are parsed as dates (an integer column stays integer time steps); ``target`` and ``columns`` become
    float32 (empty = NaN = missing). A row without an id or a timestamp, a value that is not a number, or a
    timestamp repeated within a series raises ValueError naming the column, the rows and the series (rows by the
    table's index: a CSV's first data line is row 0).
    """
    if df.empty:
        raise ValueError("the table has no rows (a header alone?)")
    missing = [c for c in (id_column, timestamp_column, target, *columns) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not found; the table has {list(df.columns)}")
    for column, what in ((id_column, "id"), (timestamp_column, "timestamp")):
        if df[column].isna().any():
            raise ValueError(f"{int(df[column].isna().sum())} rows have no {what} in column {column!r} (the first "
                             f"is row {df.index[df[column].isna()][0]}); every row needs one")
    stamps = df[timestamp_column]
    if pd.api.types.is_float_dtype(stamps):  # time steps read as floats (a CSV column with a blank, say)
        if not np.isfinite(stamps).all() or (stamps % 1 != 0).any():
            raise ValueError(f"column {timestamp_column!r} holds numbers that are not whole time steps (e.g. "
                             f"{stamps[stamps % 1 != 0].iloc[0] if (stamps % 1 != 0).any() else 'inf'}); give dates "
                             "or integer steps")
        stamps = stamps.astype(np.int64)
    if not pd.api.types.is_integer_dtype(stamps):
        stamps = _dates(stamps, timestamp_column)
    values = {}
    for column in (target, *columns):
        numbers = pd.to_numeric(df[column], errors="coerce")
        bad = numbers.isna() & df[column].notna()
        if bad.any():
            row = df.index[bad][0]
            raise ValueError(f"column {column!r} holds {df[column][row]!r} at row {row} (series "
                             f"{df[id_column][row]!r}), not a number (leave a missing value empty)")
        with np.errstate(over="ignore"):  # a number beyond float32 becomes inf: named just below
            values[column] = numbers.astype(np.float32)
        huge = np.isinf(values[column].to_numpy())
        if huge.any():
            row = df.index[huge][0]
            cell = df[column][row]
            cell = repr(cell) if isinstance(cell, str) else cell
            raise ValueError(f"column {column!r} holds {cell} at row {row} (series "
                             f"{df[id_column][row]!r}), not a finite float32 number (inf, or beyond 3.4e38); rescale "
                             "it, or leave a missing value empty")
    df = df.assign(**{timestamp_column: stamps, **values}).sort_values([id_column, timestamp_column], kind="stable")
    groups = list(df.groupby(id_column, sort=False, observed=True))  # a categorical id's unused levels: no series
    for item, g in groups:
        repeated = g[timestamp_column].duplicated()
        if repeated.any():
            raise ValueError(f"series {item!r} has timestamp {g[timestamp_column][repeated].iloc[0]} more than once "
                             f"(rows {sorted(g.index[g[timestamp_column] == g[timestamp_column][repeated].iloc[0]])})"
                             f"; give one row per (series, time step)")
    return groups


def _dates(stamps: pd.Series, column: str) -> pd.Series:
    """A column of date strings or datetimes as datetimes. UTC offsets that change along the column (a zone's
    daylight saving written as offsets, as ``DataFrame.to_csv`` writes tz-aware stamps), where pandas would leave
    Python objects (or refuse): stamps that all fall at one time of day (daily and longer steps) are read as that
    local clock, zone-free, on which their steps are regular; others (hours, minutes) as UTC, on which theirs are."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pandas 2 warns before returning objects for them
            parsed = pd.to_datetime(stamps)
        if parsed.dtype != object:
            return parsed
    except (ValueError, TypeError) as err:
        if "utc" not in str(err).lower():
            raise ValueError(f"column {column!r} does not hold dates or integer time steps: {err}") from None
    try:
        utc = pd.to_datetime(stamps, utc=True)
        local = pd.Series([pd.Timestamp(t).tz_localize(None) for t in stamps], index=stamps.index)
    except (ValueError, TypeError) as err:
        raise ValueError(f"column {column!r} does not hold dates or integer time steps: {err}") from None
    return local if (local - local.dt.normalize()).nunique() == 1 else utc


def future_stamps(stamps: pd.Series, horizon: int, freq: str | pd.DateOffset | None, item: object) -> list:
    """The ``horizon`` timestamps after a series' sorted ``stamps``: dates at ``freq`` (a pandas frequency or
    ``DateOffset``; inferred if None, including the steps :func:`calendar_step` finds; the history must be regular
    at it), or integer steps continuing the history's constant step."""
    if pd.api.types.is_integer_dtype(stamps):
        gaps = np.unique(np.diff(stamps.to_numpy()))
        if freq is not None:
            try:
                step = int(freq)
            except (TypeError, ValueError):
                raise ValueError(f"series {item!r} has integer time steps, so freq must be a whole step (e.g. 1); "
                                 f"got {freq!r}") from None
            if len(gaps) and (gaps != step).any():
                raise ValueError(f"series {item!r}: its integer time steps are not regular at freq {step} (gaps "
                                 f"{gaps[:3].tolist()} ...); fill missing steps with empty rows")
        else:
            step = int(gaps[0]) if len(gaps) == 1 else 1 if len(stamps) == 1 else None
        if step is None:
            raise ValueError(f"series {item!r}: its integer time steps are not evenly spaced ({gaps[:3].tolist()} "
                             f"...); fill missing steps with empty rows or pass freq= (--freq; the step)")
        return [int(stamps.iloc[-1]) + (i + 1) * step for i in range(horizon)]
    step = freq or (pd.infer_freq(stamps) if len(stamps) >= 3 else None) or calendar_step(stamps)
    if step is None:
        raise ValueError(f"cannot infer the frequency of series {item!r} (fewer than 3 rows, or irregular timestamps: "
                         f"fill missing steps with empty rows); pass freq= (--freq, e.g. h)")
    offset = frequency(step)
    following = stamps.iloc[:-1] + offset
    off = np.flatnonzero(following.to_numpy() != stamps.iloc[1:].to_numpy())
    if len(off) and not freq and (calendar := calendar_step(stamps)) is not None:
        return [stamps.iloc[-1] + (i + 1) * calendar for i in range(horizon)]  # 'D' across DST: calendar days
    if len(off):
        raise ValueError(f"series {item!r}: its timestamps are not regular at freq {step!r}: "
                         f"{stamps.iloc[off[0]]} is followed by {stamps.iloc[off[0] + 1]}; fill missing steps with "
                         f"empty rows or pass the right freq")
    return [stamps.iloc[-1] + (i + 1) * offset for i in range(horizon)]



def calendar_step(stamps: pd.Series) -> pd.DateOffset | None:
    """A regular step pandas' ``infer_freq`` does not name: whole months on a fixed day and time (monthly data on
    the 15th), or whole calendar days at a fixed local time (daily data in a time zone across a DST change, whose
    steps are 23 or 25 hours). None unless every step of ``stamps`` (>= 3, sorted dates) is that one offset."""
    if len(stamps) < 3 or not pd.api.types.is_datetime64_any_dtype(stamps):
        return None
    s = pd.DatetimeIndex(stamps)
    months = np.unique(np.diff(s.year * 12 + s.month))
    days = np.unique(np.diff(s.tz_localize(None).normalize().asi8 // 86_400_000_000_000))
    for count, unit in ((months, "months"), (days, "days")):
        if len(count) == 1 and count[0] > 0:
            offset = pd.DateOffset(**{unit: int(count[0])})
            if (s[:-1] + offset == s[1:]).all():
                return offset
    return None
