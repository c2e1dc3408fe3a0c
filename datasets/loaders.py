"""Loaders of the registered datasets into pandas / numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tsham.datasets.cache import fetch
from tsham.datasets.cards import CARDS
from tsham.datasets.wheel import WHEEL_SETS


def load_ett(name: str, download: bool = True) -> pd.DataFrame:
    """ETTh1 / ETTh2 as a DataFrame indexed by hourly timestamps, columns HUFL .. OT (OT is the usual target)."""
    card = _card(name, "ett")
    (relative,) = card.files
    df = pd.read_csv(fetch(card, relative, download), parse_dates=["date"]).set_index("date")
    df.index.freq = pd.infer_freq(df.index)
    return df


def load_m4(name: str, download: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """M4 hourly / weekly: (train series, test continuations), one float array per series, in file order."""
    card = _card(name, "m4")
    parts = []
    for relative in card.files:  # train first, then test
        table = pd.read_csv(fetch(card, relative, download), index_col=0)
        parts.append([row.dropna().to_numpy(np.float32) for _, row in table.iterrows()])
    train, test = parts
    if len(train) != len(test) or any(len(t) != card.horizon for t in test):
        raise ValueError(f"{name}: train and test files do not pair up ({len(train)} vs {len(test)} series)")
    return train, test


def load(name: str, download: bool = True):
    """Any registered dataset by name: evaluation sets (``CARDS``) or wheel-embedded ones (``WHEEL_SETS``)."""
    if name in WHEEL_SETS:
        return WHEEL_SETS[name]()
    if name not in CARDS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted([*CARDS, *WHEEL_SETS]))}")
    return load_ett(name, download) if name.startswith("ett") else load_m4(name, download)


def _card(name: str, kind: str):
    """The card of a dataset of this loader's kind (``ett`` or ``m4``), or a ValueError listing the known names."""
    known = sorted(n for n in CARDS if n.startswith(kind))
    if name not in known:
        raise ValueError(f"unknown {kind.upper()} dataset {name!r}; known: {', '.join(known)} (names are lower-case; "
                         f"tsham.datasets.load(name) takes any dataset)")
    return CARDS[name]
