"""What every benchmark prints and commits: machine, date, command, git revision."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """A one-line description of the machine."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def git_revision() -> str:
    """Short git revision of the checkout (with '+dirty' when it has uncommitted changes), or 'unknown'.

    ``TSHAM_REVISION`` overrides it, for copies of the tree without .git (the GPU machine's).
    """
    if os.environ.get("TSHAM_REVISION"):
        return os.environ["TSHAM_REVISION"]
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain"], cwd=here, text=True).strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header() -> dict:
    """Machine, UTC date, command and revision of this run."""
    return {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", *sys.orig_argv[1:]]),
        "revision": git_revision(),
    }


@contextmanager
def warnings_seen():
    """``with warnings_seen() as seen:`` collects the distinct messages of the warnings raised inside (each
    shown, none lost to the once-per-place filter) into the list ``seen``, sorted, on exit: what a cell's log
    records (a CUDA graph capture that failed, for one)."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
    seen.extend(sorted({str(w.message) for w in caught}))


def write_results(name: str, meta: dict, rows: list[dict], table: str, folder: Path = RESULTS) -> Path:
    """Writes ``<folder>/<name>.md`` (header + table) and ``<folder>/<name>.json`` (every number); ``folder``
    defaults to ``experiments/results``."""
    folder.mkdir(parents=True, exist_ok=True)
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    (folder / f"{name}.md").write_text(f"# {name}\n\n{head}\n\n{table}\n")
    (folder / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    return folder / f"{name}.md"


def visible_gpus(device: str) -> list[str]:
    """The GPUs a pool on ``device`` spreads its workers over: every visible one for ``cuda`` (as named by
    ``CUDA_VISIBLE_DEVICES`` when it is set), none for ``cpu`` or an explicit ``cuda:N``."""
    if device != "cuda" or not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    return named.split(",") if named else [str(i) for i in range(torch.cuda.device_count())]


def past_durations(folder: Path, key: str | None = None) -> dict[str, list[float]]:
    """Seconds each finished cell under ``folder`` took (its JSON log's ``train_seconds + eval_seconds``), grouped
    by the log's ``key`` field (e.g. ``"task"``; one group ``""`` without): the estimate a resumed pool starts from
    (:func:`run_pool`'s ``durations``)."""
    out: dict[str, list[float]] = {}
    for path in folder.glob("*.json"):
        log = json.loads(path.read_text())
        if "train_seconds" in log:
            group = str(log.get(key, "")) if key else ""
            out.setdefault(group, []).append(log["train_seconds"] + log.get("eval_seconds", 0.0))
    return out


def _pin_worker(counter, gpus: list[str]) -> None:
    """Pool initializer: the i-th worker started sees only GPU ``gpus[i % len(gpus)]`` (as ``cuda``)."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


def run_pool(cells: list, worker, name, workers: int, deadline: float = math.inf, device: str = "cpu",
             durations: dict[str, list[float]] | None = None, follow_up=None, order=None, kind=None,
             resumable: float | None = None) -> int:
    """Runs ``worker(cell)`` for every cell in ``workers`` spawned processes, with a progress bar on a terminal
    (elsewhere, e.g. in logs, one ``done <name(cell)>`` line per cell); a failed cell is reported and the rest go
    on; a dead worker (e.g. out of memory) stops the pool; no cell starts after ``deadline``
    (``time.monotonic()``), nor one that would end after it by the median duration of the cells of its ``kind``
    done so far (``kind(cell)``, e.g. its task; all cells are one kind without; ``durations``: seconds per kind,
    appended to: pass one dict to successive pools; a kind not seen yet is estimated from every kind), so a run
    given a few minutes ends on time instead of cells being cut half-trained, and a queue whose next cell is too
    long for the time left starts a shorter kind behind it. With ``device="cuda"`` on a host of several GPUs,
    the workers are spread over them round-robin (each sees one, as ``cuda``). ``follow_up(cell)``, called after
    each cell that succeeded, returns the cells it unlocked (e.g. those waiting on a learning-rate sweep), which join
    the queue at once, so no worker idles while one phase waits on another; ``order`` (a sort key) then keeps the
    queue sorted. ``resumable`` (seconds): the cells save their progress and a later pool resumes them, so one
    starts whenever this much time is left, however long its kind took. Returns the number of cells not run (those
    never unlocked are not counted)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from tqdm import tqdm
    from tsham.datasets.synthetic import one_blas_thread

    gpus = visible_gpus(device)
    print(f"{len(cells)} cells to run, {workers} workers" + (f" on {len(gpus)} GPUs" if len(gpus) > 1 else ""),
          flush=True)
    durations = {} if durations is None else durations
    kind = kind or (lambda cell: "")

    def estimate(cell) -> float:  # seconds, as the cells done so far tell: its own kind's, else every kind's
        if resumable is not None:
            return resumable
        seen = durations.get(kind(cell)) or [d for ds in durations.values() for d in ds]
        return statistics.median(seen) if seen else 0.0

    def first_fitting() -> int | None:  # the first queued cell that would end before the deadline
        now = time.monotonic()
        return next((i for i, c in enumerate(queue) if now + estimate(c) < deadline), None)

    queue = list(cells)
    if queue and first_fitting() is None:
        print(f"{len(cells)} cells not run (they would end after the deadline); run again to resume", flush=True)
        return len(cells)
    bar = tqdm(total=len(cells), desc="cells", unit="cell", disable=None)  # None: off unless on a terminal
    say = bar.write if not bar.disable else partial(print, flush=True)
    context = get_context("spawn")
    pin = {"initializer": _pin_worker, "initargs": (context.Value("i", 0), gpus)} if len(gpus) > 1 else {}
    # one BLAS thread per worker, also those the pool spawns later: 48 synthetic cells at once, each drawing
    # KernelSynth series (eigh) with 32 BLAS threads, stalled a whole device call (2026-11-30)
    with one_blas_thread(), bar, ProcessPoolExecutor(workers, mp_context=context, **pin) as pool:
        pending, started = {}, {}

        def fill() -> None:  # idle workers take the first queued cells that fit (unlocked ones may fill several)
            while queue and len(pending) < workers and (i := first_fitting()) is not None:
                c = queue.pop(i)
                future = pool.submit(worker, c)
                pending[future], started[future] = c, time.monotonic()

        fill()
        while pending:
            done = next(as_completed(pending))
            cell = pending.pop(done)
            durations.setdefault(kind(cell), []).append(time.monotonic() - started.pop(done))
            try:
                finished = done.result()
            except BrokenProcessPool as err:
                say(f"FAILED {name(cell)}: a worker process died ({err}); stopping")
                break
            except Exception as err:  # one failed cell must not stop the others; say which and why
                say(f"FAILED {name(cell)}: {type(err).__name__}: {err}")
            else:
                bar.update()
                if bar.disable:
                    say(f"done {finished}")
                try:
                    unlocked = follow_up(cell) if follow_up else []
                except Exception as err:  # the cell is done; what it would have unlocked waits for a resumed run
                    say(f"could not queue the cells {name(cell)} unlocks: {type(err).__name__}: {err}")
                    unlocked = []
                queue += unlocked
                if unlocked and order:
                    queue.sort(key=order)
                bar.total += len(unlocked)
            fill()
    left = len(queue) + len(pending)
    if left:
        print(f"{left} cells not run (deadline or a dead worker); run again to resume", flush=True)
    return left
