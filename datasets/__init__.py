"""Dataset cards, the verified download cache and loaders (installed as ``tsham.datasets``)."""

from tsham.datasets.cache import data_dir, fetch
from tsham.datasets.cards import CARDS, DatasetCard
from tsham.datasets.loaders import load, load_ett, load_m4
from tsham.datasets.synthetic import GENERATORS, SyntheticSeries, synthetic_mix
from tsham.datasets.wheel import WHEEL_SETS

__all__ = ["CARDS", "GENERATORS", "DatasetCard", "SyntheticSeries", "data_dir", "fetch", "load", "load_ett", "load_m4",
           "synthetic_mix", "WHEEL_SETS"]
