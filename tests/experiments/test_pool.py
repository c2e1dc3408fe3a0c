"""The cell pool of the GPU sweeps: GPU pinning, the duration-aware deadline, the estimate a resumed run starts from."""

import json
import multiprocessing
import os
import time
from pathlib import Path

from tsham.experiments.common import _pin_worker, past_durations, run_pool, visible_gpus


def square(x: int) -> int:
    return x * x


def record_blas_threads(path: str) -> str:
    Path(path).write_text(os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
    return path


def test_pool_runs_every_cell_without_a_deadline():
    assert run_pool([1, 2, 3], square, str, workers=2) == 0


def test_pool_starts_no_cell_that_would_end_after_the_deadline():
    # cells done before took 1000 s: with 100 s left none may start, although the deadline has not passed
    assert run_pool([1, 2, 3], square, str, workers=2, deadline=time.monotonic() + 100, durations={"": [1000.0]}) == 3
    assert run_pool([1, 2], square, str, workers=2, deadline=time.monotonic() + 100, durations={"": [1.0]}) == 0


def test_pool_starts_a_shorter_kind_when_the_next_cell_is_too_long():
    # odd cells took 1000 s, even ones 1 s: with 100 s left only the even ones start, queued behind an odd one
    parity = {"kind": lambda c: "odd" if c % 2 else "even", "durations": {"odd": [1000.0], "even": [1.0]}}
    assert run_pool([1, 2, 3, 4], square, str, workers=1, deadline=time.monotonic() + 100, **parity) == 2
    # a kind not seen yet is estimated from every kind done so far (median of 1000 and 1: too long here)
    assert run_pool([5], square, str, workers=1, deadline=time.monotonic() + 100, kind=lambda c: "new",
                    durations={"odd": [1000.0, 1000.0], "even": [1.0]}) == 1


def test_resumable_cells_start_while_the_margin_is_left():
    # cells took 1000 s, but they save their progress: with 100 s left they start under a 60-s margin, not a 200-s one
    assert run_pool([1, 2], square, str, workers=1, deadline=time.monotonic() + 100, durations={"": [1000.0]},
                    resumable=60.0) == 0
    assert run_pool([1, 2], square, str, workers=1, deadline=time.monotonic() + 100, resumable=200.0) == 2


def test_pool_durations_carry_over_to_the_next_pool():
    # the caller's list receives every finished cell's duration, so a second pool (phase 2) starts estimated
    durations = {"": [0.5]}
    assert run_pool([1, 2, 3], square, str, workers=2, durations=durations) == 0
    assert len(durations[""]) == 4 and all(d > 0 for d in durations[""])


def test_pool_runs_the_cells_a_finished_cell_unlocks_in_order():
    # 1 unlocks 10, 30 and 20 (as a learning-rate sweep unlocks its policy's cells); one worker runs them by order
    finished = []

    def follow_up(cell):
        finished.append(cell)
        return [10, 30, 20] if cell == 1 else []

    assert run_pool([1], square, str, workers=1, follow_up=follow_up, order=lambda c: -c) == 0
    assert finished == [1, 30, 20, 10]


def test_a_failing_follow_up_is_reported_and_the_pool_goes_on(capsys):
    def follow_up(cell):
        if cell == 1:
            raise OSError("disk full")
        return []

    assert run_pool([1, 2], square, str, workers=1, follow_up=follow_up) == 0
    out = capsys.readouterr().out
    assert "done 1" in out and "could not queue the cells 1 unlocks: OSError: disk full" in out
    assert "FAILED" not in out


def test_pool_counts_unrun_cells_after_a_passed_deadline():
    assert run_pool([1, 2], square, str, workers=1, deadline=time.monotonic() - 1) == 2


def test_workers_are_pinned_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(5):
        _pin_worker(counter, ["2", "5"])
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["2", "5", "2", "5", "2"]


def test_no_gpus_on_cpu_or_an_explicit_device():
    assert visible_gpus("cpu") == []
    assert visible_gpus("cuda:0") == []


def test_past_durations_read_the_cell_logs(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"task": "mqar", "train_seconds": 10.0, "eval_seconds": 2.5}))
    (tmp_path / "b.json").write_text(json.dumps({"task": "synthetic", "train_seconds": 4.0}))
    (tmp_path / "c.json").write_text(json.dumps({"task": "mqar", "train_seconds": 1.0}))
    (tmp_path / "learning_rates.json").write_text(json.dumps([["task", "policy", 0.001]]))  # not a cell log
    assert {k: sorted(v) for k, v in past_durations(tmp_path).items()} == {"": [1.0, 4.0, 12.5]}
    assert {k: sorted(v) for k, v in past_durations(tmp_path, "task").items()} == {"mqar": [1.0, 12.5],
                                                                                   "synthetic": [4.0]}


def test_workers_get_one_blas_thread_and_the_parent_keeps_its_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "32")
    paths = [str(tmp_path / f"{i}.txt") for i in range(2)]
    assert run_pool(paths, record_blas_threads, str, workers=2) == 0
    assert [Path(p).read_text() for p in paths] == ["1", "1"]
    assert os.environ["OPENBLAS_NUM_THREADS"] == "32"
