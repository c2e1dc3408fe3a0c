"""Dataset cards: where each evaluation set comes from, its checksum, licence, frequency and splits."""

from __future__ import annotations

from dataclasses import dataclass, field

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}"
M4_URL = "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/{}"


@dataclass(frozen=True)
class DatasetCard:
    """One dataset.

    Attributes:
        name: registry key. files: path inside the cache directory -> (md5, canonical URL).
        frequency: pandas frequency string. licence, source: as published.
        horizon: the benchmark horizon (M4) or the base of the GIFT-Eval terms (ETT: 48).
        splits: named row borders (LTSF) or notes.
        zero_shot_eval: an evaluation set: never train on it when a result is called zero-shot.
    """

    name: str
    files: dict[str, tuple[str, str]]
    frequency: str
    licence: str
    source: str
    horizon: int
    splits: dict = field(default_factory=dict)
    zero_shot_eval: bool = True


_ETT_SPLITS = {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}  # LTSF borders, before look-back

CARDS: dict[str, DatasetCard] = {
    "etth1": DatasetCard(
        "etth1", {"ett/ETTh1.csv": ("8381763947c85f4be6ac456c508460d6", ETT_URL.format("ETTh1.csv"))},
        frequency="h", licence="CC BY-ND 4.0 (Zhou et al., Informer, AAAI 2021)",
        source="zhouhaoyi/ETDataset ETT-small", horizon=48, splits=_ETT_SPLITS,
    ),
    "etth2": DatasetCard(
        "etth2", {"ett/ETTh2.csv": ("51a229a3fc13579dd939364fefe9c7ab", ETT_URL.format("ETTh2.csv"))},
        frequency="h", licence="CC BY-ND 4.0 (Zhou et al., Informer, AAAI 2021)",
        source="zhouhaoyi/ETDataset ETT-small", horizon=48, splits=_ETT_SPLITS,
    ),
    "m4_hourly": DatasetCard(
        "m4_hourly",
        {"m4/Hourly-train.csv": ("5838f531d0a29ba6aa70a90f72c82686", M4_URL.format("Train/Hourly-train.csv")),
         "m4/Hourly-test.csv": ("d3f313cdb3417c30297ae4beec188266", M4_URL.format("Test/Hourly-test.csv"))},
        frequency="h", licence="M4 competition data (Makridakis et al. 2020)", source="Mcompetitions/M4-methods",
        horizon=48,
    ),
    "m4_weekly": DatasetCard(
        "m4_weekly",
        {"m4/Weekly-train.csv": ("4ff716c6b4e63815761d4bc6d5eeff1d", M4_URL.format("Train/Weekly-train.csv")),
         "m4/Weekly-test.csv": ("39463ccfd938eb3c89afc9368a7b0ab4", M4_URL.format("Test/Weekly-test.csv"))},
        frequency="W", licence="M4 competition data (Makridakis et al. 2020)", source="Mcompetitions/M4-methods",
        horizon=13,
    ),
}
