"""The forecasting commands through subprocess, as a user types them: train -> forecast (+ plot) -> finetune."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def tsham(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tsham.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    stamps = pd.date_range("2024-01-01", periods=200, freq="h")
    pd.concat([pd.DataFrame({"id": k, "timestamp": stamps, "target": np.sin(np.arange(200) / 4 + k)})
               for k in range(2)]).to_csv(root / "mine.csv", index=False)
    out = tsham("train", "--out", "run", "--steps", "4", "--batch-size", "4", "--horizon", "8", "--context-length",
                "32", "--patch-length", "8", "--d-model", "16", "--layers", "1", "--heads", "2", "--synthetic", "4",
                "--series-length", "128", "--input", "mine.csv", "--warmup", "2", cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    return root


def test_forecast_csv_and_plot(trained):
    out = tsham("forecast", "--model", "run/model", "--input", "mine.csv", "--horizon", "12", "--output", "fc.csv",
                "--plot", "fc.png", cwd=trained)
    assert out.returncode == 0, out.stderr[-2000:]
    fc = pd.read_csv(trained / "fc.csv")
    assert len(fc) == 24 and {"0.1", "0.5", "0.9", "predictions"} <= set(fc.columns)
    assert (trained / "fc.png").stat().st_size > 10_000
    import json

    from tsham.heads import DEFAULT_LAGS

    prior = json.loads((trained / "run/model/config.json").read_text())["config"]["prior"]
    assert tuple(prior["lags"]) == DEFAULT_LAGS  # new models get the seasonal prior (`--prior-lags` alone: none)
    assert prior["means"] == [[4, 3]]  # of the shipped averaged copies, a context of 32 steps can score only 4x3
    assert prior["per_step"] and prior["spread"]  # the shipped model's refinements


def test_train_offers_the_means_its_lags_and_context_can_score(capsys, tmp_path):
    import json

    from tsham.cli import main

    args = ["train", "--steps", "1", "--batch-size", "2", "--horizon", "8", "--patch-length", "8", "--d-model", "16",
            "--layers", "1", "--heads", "2", "--synthetic", "2", "--series-length", "400", "--warmup", "1"]
    assert main([*args, "--out", str(tmp_path / "a"), "--context-length", "200", "--prior-lags", "1", "7"]) == 0
    prior = json.loads((tmp_path / "a/model/config.json").read_text())["config"]["prior"]
    assert prior["lags"] == [1, 7] and prior["means"] == [[7, 4]]  # the shipped means of lag 7, none of 24 or 168
    assert main([*args, "--out", str(tmp_path / "b"), "--context-length", "150", "--prior-means", "24x7"]) == 0
    assert "cannot score the means 24x7" in capsys.readouterr().out  # 7 x 24 + 24 steps > 150
    prior = json.loads((tmp_path / "b/model/config.json").read_text())["config"]["prior"]
    assert prior["means"] == [] and not prior["spread"]  # no mean to spread
    assert main([*args, "--out", str(tmp_path / "c"), "--prior-lags", "--prior-means", "24x7"]) == 2
    assert "--prior-means needs a prior" in capsys.readouterr().err


def test_train_resumes_a_run_started_before_the_prior_scored_steps_and_spread(tmp_path, monkeypatch):
    import json

    from tsham.cli import main
    from tsham.heads import PriorConfig

    class OldPrior(PriorConfig):  # what `tsham train` built before rev e6aa527
        def __post_init__(self):
            self.per_step = self.spread = False
            super().__post_init__()

    args = ["train", "--out", str(tmp_path), "--batch-size", "2", "--horizon", "8", "--patch-length", "8",
            "--d-model", "16", "--layers", "1", "--heads", "2", "--synthetic", "2", "--series-length", "400",
            "--warmup", "1", "--context-length", "200"]
    with monkeypatch.context() as mp:
        mp.setattr("tsham.heads.PriorConfig", OldPrior)
        assert main([*args, "--steps", "1"]) == 0
    assert main([*args, "--steps", "2", "--resume"]) == 0
    prior = json.loads((tmp_path / "model/config.json").read_text())["config"]["prior"]
    assert prior["means"] and not prior["per_step"] and not prior["spread"]  # resumed as it was built


def test_train_names_a_bad_averaged_candidate(capsys, tmp_path):
    from tsham.cli import main

    assert main(["train", "--out", str(tmp_path), "--synthetic", "2", "--prior-means", "24by7"]) == 2
    assert "LAGxSEASONS" in capsys.readouterr().err and not (tmp_path / "model").exists()


def test_a_run_folder_is_never_overwritten_unasked(trained, capsys):
    from tsham.cli import main

    before = (trained / "run/model/model.safetensors").read_bytes()
    common = ["--input", "mine.csv", "--synthetic", "0", "--steps", "1", "--batch-size", "2", "--horizon", "8"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained)
        assert main(["finetune", "--model", "run/model", "--out", "run", "--overwrite", *common]) == 2
        assert "would overwrite the model being fine-tuned" in capsys.readouterr().err
        assert main(["train", "--out", "run", "--context-length", "32", "--patch-length", "8", *common]) == 2
        err = capsys.readouterr().err
        assert "already holds a run" in err and "give --resume to continue it, --overwrite" in err
    assert (trained / "run/model/model.safetensors").read_bytes() == before


def test_training_takes_freq_and_every_command_names_a_missing_output_folder(trained, capsys):
    """The error for gaps says --freq; train and finetune have it (checked, not filled). Stream names a missing
    output folder and input as forecast does."""
    from tsham.cli import main

    rows = pd.read_csv(trained / "mine.csv")
    rows.drop(index=[10, 11, 12]).to_csv(trained / "gaps.csv", index=False)
    common = ["--input", "gaps.csv", "--synthetic", "0", "--steps", "1", "--batch-size", "2", "--horizon", "8",
              "--model", "run/model", "--out", "gapped"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained)
        assert main(["finetune", *common]) == 2
        assert "pass freq= (--freq" in capsys.readouterr().err
        assert main(["finetune", *common, "--freq", "h"]) == 2  # the flag exists and the gap is named at it
        err = capsys.readouterr().err
        assert "not regular at freq 'h'" in err and "fill missing steps with empty rows" in err
        assert main(["stream", "--model", "run/model", "--input", "mine.csv", "--horizon", "3", "--output",
                     "nowhere/out.csv"]) == 2
        assert "the folder of nowhere/out.csv does not exist" in capsys.readouterr().err
        assert main(["stream", "--model", "run/model", "--input", "absent.csv", "--horizon", "3"]) == 2
        assert "--input absent.csv not found" in capsys.readouterr().err


def test_finetune_with_frozen_encoder(trained):
    out = tsham("finetune", "--model", "run/model", "--input", "mine.csv", "--out", "ft", "--steps", "2",
                "--batch-size", "2", "--horizon", "8", "--freeze", "encoder", "--validation-steps", "24",
                "--val-every", "1", cwd=trained)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (trained / "ft/model/validation.json").is_file()
    decision = json.loads((trained / "ft/model/validation.json").read_text())
    kept = "the starting weights" if decision["best_step"] == 0 else f"step {decision['best_step']}"
    assert f"validation (pinball): {decision['initial_val_loss']:.4g} at the start" in out.stdout
    assert f"exported {kept}" in out.stdout
    assert len((trained / "ft/validation.csv").read_text().splitlines()) == 1 + 3  # steps 0, 1, 2
    from safetensors.torch import load_file

    before = load_file(trained / "run/model/model.safetensors")
    after = load_file(trained / "ft/model/model.safetensors")
    assert all((before[k] == after[k]).all() for k in before if k.startswith("encoder."))
    assert any((before[k] != after[k]).any() for k in before if k.startswith("head."))


def test_finetune_starts_from_the_shipped_model_unless_told(trained):
    from tsham.checkpoint import load_checkpoint
    from tsham.forecasting.pipeline import DEFAULT_MODEL

    out = tsham("finetune", "--input", "mine.csv", "--out", "ft_default", "--steps", "1", "--batch-size", "2",
                "--horizon", "8", "--context-length", "64", cwd=trained)
    assert out.returncode == 0, out.stderr[-2000:]
    shipped, tuned = load_checkpoint(DEFAULT_MODEL), load_checkpoint(trained / "ft_default/model")
    assert tuned.config.ham == shipped.config.ham and tuned.config.prior == shipped.config.prior
    # short training windows do not shorten what the fine-tuned model reads when it forecasts
    assert tuned.config.context_length == shipped.config.context_length > 64
    assert "trained on windows of 64 steps" in out.stdout
    again = tsham("finetune", "--input", "mine.csv", "--out", "ft_default", "--steps", "1", cwd=trained)
    assert again.returncode == 2 and "--resume" not in again.stderr and "--overwrite to replace it" in again.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nowhere", "--input", "mine.csv", "--horizon", "5"], "config.json not found"),
    (["--model", "run/model", "--input", "mine.csv", "--horizon", "0"], "horizon must lie"),
    (["--model", "run/model", "--input", "missing.csv", "--horizon", "5"], "missing.csv not found"),
    (["--model", "run/model", "--input", "mine.csv", "--horizon", "5", "--target", "y"], r"columns \['y'\]"),
])
def test_forecast_bad_input_is_one_clear_line(trained, args, message):
    out = tsham("forecast", *args, cwd=trained)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert re.search(message, out.stderr), out.stderr


def test_stream_from_stdin_resumes_from_its_state(trained):
    rows = pd.read_csv(trained / "mine.csv").sort_values("timestamp")
    first = rows.iloc[:300]
    stream = lambda part: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "5", "--every", "50",
         "--state", "streams"], input=part.to_csv(index=False), capture_output=True, text=True, cwd=trained,
        timeout=600)
    out = stream(first)
    assert out.returncode == 0, out.stderr[-2000:]
    fc = pd.read_csv(io.StringIO(out.stdout))
    assert len(fc) == 2 * 3 * 5 and set(fc["id"]) == {0, 1}  # 150 rows per series, a forecast every 50
    assert {"origin", "timestamp", "0.5", "predictions"} <= set(fc.columns)
    assert (pd.to_datetime(fc["timestamp"]) > pd.to_datetime(fc["origin"])).all()
    assert (trained / "streams" / "0" / "stream.safetensors").is_file()
    out = stream(rows)  # the whole file again (`tail -n +1 -f`): the rows read before are skipped
    assert out.returncode == 0, out.stderr[-2000:]
    assert "skipped 300 rows read before" in out.stderr
    resumed = pd.read_csv(io.StringIO(out.stdout))
    assert len(resumed) == 2 * 1 * 5  # resumed: the count of observations per series continued from 150 to 200
    whole = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "5",
                            "--every", "50"], input=rows.to_csv(index=False), capture_output=True, text=True,
                           cwd=trained, timeout=600)
    np.testing.assert_allclose(resumed["0.5"], pd.read_csv(io.StringIO(whole.stdout))["0.5"].iloc[-10:], rtol=1e-5)
    bad = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "5"],
                         input="timestamp,value\n2024-01-01,1\n", capture_output=True, text=True, cwd=trained)
    assert bad.returncode != 0 and "target" in bad.stderr


def test_stream_state_folders_never_collide_and_are_saved_when_a_row_is_bad(trained):
    from pathlib import Path

    from tsham.forecasting.stream_cli import state_folder

    folders = {state_folder(Path("st"), item) for item in ("a/b", "a_b", "..", ".", "a b")}
    assert len(folders) == 5 and all(f.parent == Path("st") for f in folders)
    rows = "id,timestamp,target\n" + "".join(f"{item},2024-01-01 0{h}:00,{h + k}\n" for h in range(4)
                                            for k, item in enumerate(("a/b", "a_b", "..")))
    out = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2",
                          "--state", "collide"], input=rows + "a_b,not a time,1\n", capture_output=True, text=True,
                         cwd=trained, timeout=600)
    assert out.returncode == 2 and "line 14" in out.stderr and "not a timestamp" in out.stderr, out.stderr
    saved = sorted(p.name for p in (trained / "collide").iterdir())
    assert saved == ["%2E%2E", "a%2Fb", "a_b"]  # three series, three folders, none outside --state
    assert len(pd.read_csv(io.StringIO(out.stdout))) == 3 * 3 * 2  # a forecast at rows 2-4 of each, before the error
    back = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2",
                           "--state", "collide"], input="id,timestamp,target\na/b,2024-01-01 02:00,1\n",
                          capture_output=True, text=True, cwd=trained, timeout=600)
    assert back.returncode == 0 and "skipped 1 rows read before" in back.stderr  # a/b's own last timestamp
    late = "id,timestamp,target\nq,2024-01-01 03:00,1\nq,2024-01-01 02:00,1\n"
    back = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2"],
                          input=late, capture_output=True, text=True, cwd=trained, timeout=600)
    assert back.returncode == 2 and "goes back in time" in back.stderr
    gap = "id,timestamp,target\nq,2024-01-01 00:00,1\nq,2024-01-01 02:00,1\n"
    back = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2",
                           "--freq", "h"], input=gap, capture_output=True, text=True, cwd=trained, timeout=600)
    assert back.returncode == 2 and "jumps from 2024-01-01 00:00:00 to 2024-01-01 02:00:00" in back.stderr
    other = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2",
                            "--state", "collide", "--flags", "f"], input="id,timestamp,target,f\na_b,2024-01-02,1,0\n",
                           capture_output=True, text=True, cwd=trained, timeout=600)
    assert other.returncode == 2 and "resume it with the same --target, --past-covariates and --flags" in other.stderr
    empty = subprocess.run([sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2"],
                           input="", capture_output=True, text=True, cwd=trained, timeout=600)
    assert empty.returncode == 2 and "the input is empty" in empty.stderr, empty.stderr
    long = tsham("stream", "--model", "run/model", "--horizon", "100000", cwd=trained)
    assert long.returncode == 2 and "longer than the model forecasts" in long.stderr
    zero = tsham("stream", "--model", "run/model", "--horizon", "2", "--every", "0", cwd=trained)
    assert zero.returncode == 2 and "must be a whole number >= 1" in zero.stderr


def test_train_names_the_series_too_short_for_its_horizon(trained, capsys):
    import argparse

    from tsham.cli import _pool_from_args

    stamps = pd.date_range("2024-01-01", periods=60, freq="h")
    pd.concat([pd.DataFrame({"id": "long", "timestamp": stamps, "target": np.arange(60.0)}),
               pd.DataFrame({"id": "short", "timestamp": stamps[:5], "target": np.arange(5.0)})]).to_csv(
        trained / "short.csv", index=False)
    args = argparse.Namespace(synthetic=0, series_length=64, seed=0, input=str(trained / "short.csv"), id_column="id",
                              timestamp_column="timestamp", target="target", horizon=8, horizons=None, freq=None)
    assert len(_pool_from_args(args)) == 1
    assert "1 of the 2 series" in capsys.readouterr().err
    args.horizon = 100
    with pytest.raises(ValueError, match="every series of .* has fewer than 101 observed values"):
        _pool_from_args(args)
    args.horizon = 8
    empty = pd.DataFrame({"id": "e", "timestamp": stamps, "target": np.nan})  # rows, but nothing observed
    empty.to_csv(trained / "empty.csv", index=False)
    args.input = str(trained / "empty.csv")
    with pytest.raises(ValueError, match="every series of .* has fewer than 9 observed values"):
        _pool_from_args(args)
    gappy = pd.DataFrame({"id": "g", "timestamp": stamps.delete(range(20, 30)), "target": np.arange(50.0)})
    gappy.to_csv(trained / "gappy.csv", index=False)
    args.input = str(trained / "gappy.csv")
    with pytest.raises(ValueError, match="cannot infer the frequency of series 'g'"):  # the gap would join steps
        _pool_from_args(args)
    gappy.assign(target=np.r_[np.arange(49.0), np.inf]).assign(timestamp=stamps[:50]).to_csv(args.input, index=False)
    with pytest.raises(ValueError, match="column 'target' holds inf at row 49 .*not a finite"):
        _pool_from_args(args)


def test_forecast_keeps_ids_that_look_like_numbers(tmp_path):
    from tsham.cli import main

    stamps = pd.date_range("2024-01-01", periods=60, freq="h")
    pd.concat([pd.DataFrame({"id": name, "timestamp": stamps, "target": np.sin(np.arange(60) / 4)})
               for name in ("007", "12")]).to_csv(tmp_path / "ids.csv", index=False)
    assert main(["forecast", "--input", str(tmp_path / "ids.csv"), "--horizon", "2", "--output",
                 str(tmp_path / "fc.csv")]) == 0
    ids = pd.read_csv(tmp_path / "fc.csv", dtype={"id": str})["id"].unique().tolist()
    assert sorted(ids) == ["007", "12"]  # read as numbers, "007" came out as 7


def test_stream_takes_integer_time_steps_and_resumes_them(trained):
    rows = "timestamp,target\n" + "".join(f"{10 + 2 * t},{np.sin(t / 4):.4f}\n" for t in range(40))
    stream = lambda text, *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "3", "--every", "20",
         *extra], input=text, capture_output=True, text=True, cwd=trained, timeout=600)
    out = stream(rows, "--state", "steps")
    assert out.returncode == 0, out.stderr[-2000:]
    fc = pd.read_csv(io.StringIO(out.stdout))
    assert fc["origin"].tolist() == [48] * 3 + [88] * 3 and fc["timestamp"].tolist() == [50, 52, 54, 90, 92, 94]
    more = "timestamp,target\n" + "".join(f"{10 + 2 * t},{np.sin(t / 4):.4f}\n" for t in range(40, 60))
    back = stream(more, "--state", "steps")
    assert back.returncode == 0 and pd.read_csv(io.StringIO(back.stdout))["timestamp"].tolist() == [130, 132, 134]
    gap = stream("timestamp,target\n1,0.5\n3,0.1\n", "--freq", "1")
    assert gap.returncode == 2 and "jumps from 1 to 3" in gap.stderr, gap.stderr
    gap = stream("timestamp,target\n1,0.5\n2,0.1\n5,0.2\n")  # without --freq the steps set the step: a gap is refused
    assert gap.returncode == 2 and "jumps from 2 to 5, where its steps were 1" in gap.stderr, gap.stderr
    bad = stream("timestamp,target\n1,0.5\n", "--freq", "h")
    assert bad.returncode == 2 and "integer time steps take a whole-number --freq" in bad.stderr, bad.stderr
    mixed = stream("timestamp,target\n1,0.5\n2024-01-01,0.1\n")
    assert mixed.returncode == 2 and "mixes integer time steps and dates" in mixed.stderr, mixed.stderr
    signed = stream("timestamp,target\n+5,0.5\n6.0,0.1\n 7 ,0.2\n", "--every", "3")
    assert signed.returncode == 0 and pd.read_csv(io.StringIO(signed.stdout))["timestamp"].tolist() == [8, 9, 10]
    daily = stream("timestamp,target\n20240130,0.5\n20240131,0.1\n20240201,0.2\n", "--every", "3", "--freq", "D")
    assert daily.returncode == 0, daily.stderr  # a pandas frequency: compact dates are dates
    assert pd.read_csv(io.StringIO(daily.stdout))["timestamp"].tolist()[0] == "2024-02-02 00:00:00"
    dated = stream("timestamp,target\n2024-01-30,0.5\n", "--freq", "1")
    assert dated.returncode == 2 and "but these timestamps are dates" in dated.stderr, dated.stderr


def test_a_dated_stream_resumes_with_compact_dates(trained):
    run = lambda text: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "tsham.cli", "stream", "--model", "run/model", "--horizon", "2", "--every", "2",
         "--state", "compact"], input=text, capture_output=True, text=True, cwd=trained, timeout=600)
    assert run("timestamp,target\n2024-01-29,0.5\n2024-01-30,0.1\n").returncode == 0
    back = run("timestamp,target\n20240131,0.2\n20240201,0.3\n")  # the saved series is dated: so are these
    assert back.returncode == 0, back.stderr
    assert pd.read_csv(io.StringIO(back.stdout))["timestamp"].tolist() == ["2024-02-02 00:00:00", "2024-02-03 00:00:00"]


def test_train_takes_the_fixed_policies_and_refuses_a_target_they_cannot_use(tmp_path, capsys):
    from tsham.cli import main

    args = ["train", "--synthetic", "2", "--series-length", "64", "--steps", "1", "--batch-size", "2", "--horizon",
            "8", "--context-length", "32", "--patch-length", "8", "--d-model", "16", "--layers", "1", "--heads", "2",
            "--warmup", "1", "--prior-lags"]
    assert main([*args, "--out", str(tmp_path / "rc"), "--router", "recency"]) == 0  # it had failed: target set
    assert main([*args, "--out", str(tmp_path / "r2"), "--router", "recency", "--kv-target", "0.2"]) == 2
    assert "the recency router takes no target fraction" in capsys.readouterr().err


def test_train_checks_its_sizes_before_it_starts(tmp_path, capsys):
    from tsham.cli import main

    for flag, value, message in (("--batch-size", "0", "must be a whole number >= 1"),
                                 ("--steps", "0", "must be a whole number >= 1"),
                                 ("--horizon", "800", "--horizon(s) 800 is longer than the model forecasts (720)")):
        try:  # argparse's own errors exit; the command's return 2
            code = main(["train", "--out", str(tmp_path / flag), "--synthetic", "2", flag, value])
        except SystemExit as exit_:
            code = exit_.code
        assert code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / flag).exists()  # nothing written


def test_forecast_checks_its_outputs_and_id_column_before_it_runs(trained, capsys):
    from tsham.cli import main

    base = ["forecast", "--model", str(trained / "run/model"), "--input", str(trained / "mine.csv"), "--horizon", "4"]
    (trained / "afolder").mkdir(exist_ok=True)
    for extra, message in ((["--output", str(trained / "afolder")], "is a folder"),
                           (["--output", str(trained / "same.png"), "--plot", str(trained / "same.png")],
                            "two outputs have the same path"),
                           (["--output", str(trained / "x.csv"), "--plot", str(trained / "x.xyz")],
                            "matplotlib cannot write .xyz"),
                           (["--output", str(trained / "y.csv"), "--id-column", "item"],
                            "--id-column 'item' is not a column")):
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (trained / "x.csv").exists() and not (trained / "same.png").exists()  # nothing written first
    with pytest.raises(SystemExit):  # argparse: a whole number >= 1
        main([*base, "--plot-series", "0"])


def test_a_start_aligned_model_trains_with_the_alignment_jittered():
    from tsham.cli import _train_config, build_parser
    from tsham.config import TshamConfig

    args = build_parser().parse_args(["finetune", "--model", "m", "--out", "o", "--input", "x.csv"])
    start, end = TshamConfig(align="start"), TshamConfig(align="end")
    assert _train_config(args, start).align_jitter  # as the shipped model was pretrained: forecasts open mid-patch
    assert not _train_config(args, end).align_jitter  # its last context patch always ends at the forecast
    parser = build_parser()
    off = parser.parse_args(["finetune", "--model", "m", "--out", "o", "--input", "x.csv", "--no-align-jitter"])
    assert not _train_config(off, start).align_jitter
    on = parser.parse_args(["train", "--out", "o", "--synthetic", "2", "--align-jitter"])
    assert _train_config(on, end).align_jitter  # a new model meant for streams


def test_the_validation_options_reach_the_train_config():
    from tsham.cli import _train_config, build_parser
    from tsham.config import TshamConfig
    from tsham.training.validation import VAL_METRICS

    parser = build_parser()
    base = ["finetune", "--model", "m", "--out", "o", "--input", "x.csv", "--validation-steps", "96"]
    default = _train_config(parser.parse_args(base), TshamConfig())
    assert (default.val_metric, default.val_windows) == ("pinball", 512)
    chosen = _train_config(parser.parse_args([*base, "--val-metric", "mse", "--val-windows", "64"]), TshamConfig())
    assert (chosen.val_metric, chosen.val_windows) == ("mse", 64)
    metric = next(a for a in parser._subparsers._group_actions[0].choices["finetune"]._actions
                  if a.dest == "val_metric")
    assert tuple(metric.choices) == VAL_METRICS  # the CLI offers what validation scores
