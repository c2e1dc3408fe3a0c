"""Reading users' tables (CSV or parquet) into series, with errors that name the file and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_table(path: str | Path) -> pd.DataFrame:
    """CSV or parquet by extension; or, for the name of a wheel-embedded dataset (``sm_co2`` ...), that dataset
    in long format (id = column name, timestamp, target)."""
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
            raise ValueError(f"reading {path} needs a parquet engine (pip install pyarrow): {err}") from None
    return pd.read_csv(path)


def long_frame(df: pd.DataFrame, id_column: str, timestamp_column: str, target: str) -> pd.DataFrame:
    """Checks the columns of a long table; a table without ``id_column`` is one series named 'series'."""
    missing = [c for c in (timestamp_column, target) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not found; the table has {list(df.columns)} (set --timestamp-column / "
                         f"--target)")
    if id_column not in df.columns:
        df = df.assign(**{id_column: "series"})
    return df


def series_of(df: pd.DataFrame, id_column: str, timestamp_column: str, target: str) -> list[np.ndarray]:
    """The target of each series, in time order (float32, NaN = missing)."""
    df = df.sort_values([id_column, timestamp_column])
    return [g[target].to_numpy(np.float32) for _, g in df.groupby(id_column, sort=False)]
