"""Real series that ship inside installed wheels (statsmodels): no download, fine to pretrain on."""

from __future__ import annotations

import pandas as pd


def _statsmodels(name: str) -> pd.DataFrame:
    import statsmodels.api as sm

    return getattr(sm.datasets, name).load_pandas().data


def co2() -> pd.DataFrame:
    """Mauna Loa weekly CO2 (ppm), 1958-2001, with missing weeks (NaN)."""
    df = _statsmodels("co2")
    df.index.freq = pd.infer_freq(df.index)
    return df


def sunspots() -> pd.DataFrame:
    """Yearly sunspot activity, 1700-2008."""
    df = _statsmodels("sunspots")
    df.index = pd.to_datetime(df.pop("YEAR").astype(int).astype(str), format="%Y")
    df.index.freq = "YS"
    return df


def elnino() -> pd.DataFrame:
    """Monthly sea-surface temperature of the El Nino region, 1950-2010 (one column)."""
    wide = _statsmodels("elnino")
    long = wide.melt(id_vars="YEAR", var_name="month", value_name="sst")
    months = {m: i + 1 for i, m in enumerate(wide.columns[1:])}
    long.index = pd.to_datetime({"year": long["YEAR"].astype(int), "month": long["month"].map(months), "day": 1})
    return long[["sst"]].sort_index().asfreq("MS")


def macrodata() -> pd.DataFrame:
    """US quarterly macroeconomic series 1959-2009 (GDP, consumption, investment, inflation, ...): covariates."""
    df = _statsmodels("macrodata")
    df.index = pd.PeriodIndex.from_fields(year=df.pop("year").astype(int), quarter=df.pop("quarter").astype(int),
                                          freq="Q").to_timestamp()
    df.index.freq = "QS-OCT"
    return df


WHEEL_SETS = {"sm_co2": co2, "sm_sunspots": sunspots, "sm_elnino": elnino, "sm_macrodata": macrodata}
