"""What every benchmark prints and commits: machine, date, command, git revision."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
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


def write_results(name: str, meta: dict, rows: list[dict], table: str) -> Path:
    """Writes ``results/<name>.md`` (header + table) and ``results/<name>.json`` (every number)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{head}\n\n{table}\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return RESULTS / f"{name}.md"
