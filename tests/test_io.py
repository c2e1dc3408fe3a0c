"""tsham.io: long tables read into checked series."""

import numpy as np
import pandas as pd
import pytest

from tsham.io import future_stamps, long_series


def test_utc_offsets_that_change_with_daylight_saving_are_read_as_utc():
    local = pd.date_range("2024-03-30", periods=48, freq="h", tz="Europe/Paris")  # the clocks go forward on the 31st
    df = pd.DataFrame({"id": "a", "timestamp": [str(t) for t in local], "target": np.arange(48.0)})  # as to_csv writes
    [(item, rows)] = long_series(df, "id", "timestamp", "target")
    assert str(rows["timestamp"].dt.tz) == "UTC" and (rows["timestamp"].diff().dropna() == pd.Timedelta("1h")).all()
    assert future_stamps(rows["timestamp"], 2, None, item)[0] == local[-1].tz_convert("UTC") + pd.Timedelta("1h")


@pytest.mark.parametrize("value", ["1e40", "inf", "-inf"])
def test_a_value_beyond_float32_is_named_not_turned_into_inf(value):
    df = pd.DataFrame({"id": ["a", "a", "a"], "timestamp": [1, 2, 3], "target": ["1", value, "3"]})
    with pytest.raises(ValueError, match=f"column 'target' holds '{value}' at row 1 .*not a finite float32"):
        long_series(df, "id", "timestamp", "target")


def test_daily_stamps_with_daylight_saving_offsets_are_read_on_their_local_clock():
    local = pd.date_range("2024-03-25 08:00", periods=20, freq="D", tz="Europe/Berlin")  # the clocks move on the 31st
    df = pd.DataFrame({"id": "d", "timestamp": [str(t) for t in local], "target": np.arange(20.0)})
    [(item, rows)] = long_series(df, "id", "timestamp", "target")
    assert rows["timestamp"].dt.tz is None and (rows["timestamp"].dt.hour == 8).all()
    assert future_stamps(rows["timestamp"], 2, None, item) == [pd.Timestamp("2024-04-14 08:00"),
                                                               pd.Timestamp("2024-04-15 08:00")]


def test_a_table_without_rows_is_named():
    with pytest.raises(ValueError, match="the table has no rows"):
        long_series(pd.DataFrame(columns=["id", "timestamp", "target"]), "id", "timestamp", "target")


def test_a_frequency_is_read_quietly_or_named_when_unknown():
    import warnings

    import pandas as pd

    from tsham.io import frequency

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' notes on deprecated spellings stay out of the user's terminal
        assert frequency("h") == pd.tseries.frequencies.to_offset("h")
        with pytest.raises(ValueError, match="unknown frequency 'bogus': give a pandas frequency") as raised:
            frequency("bogus")
    assert raised.value.__cause__ is None and "KeyError" not in str(raised.value)
    assert frequency(pd.offsets.Day()) == pd.offsets.Day()


def test_an_empty_or_unreadable_csv_is_named(tmp_path):
    from tsham.io import read_table

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv is empty: expected a CSV with a header row"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "code.py").write_text("a,b\n1,2\nx = f(1, 2, 3, 4)\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"code\.py is not a readable CSV table"):
        read_table(tmp_path / "code.py")


def test_outputs_are_checked_before_the_work(tmp_path):
    from tsham.io import check_outputs

    check_outputs(str(tmp_path / "a.csv"), "-", None, plot=str(tmp_path / "a.png"))  # stdout and absent: skipped
    with pytest.raises(FileNotFoundError, match="the folder of .*missing/a.csv does not exist"):
        check_outputs(str(tmp_path / "missing" / "a.csv"))
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs(str(tmp_path))
    with pytest.raises(ValueError, match="two outputs have the same path"):
        check_outputs(str(tmp_path / "a.csv"), plot=str(tmp_path / "a.csv"))
