"""The seasonal prior's copies, all slots at once (rev eee6e41) against the plain lags in one gather and the means
one at a time (now): a training step of the shipped model and ``copies()`` alone, side by side in one run.

    python -m tsham.experiments.bench_prior_copies [--name bench_prior_copies_h200] [--before-file F]   # CUDA

Rows: a bf16-autocast forward + backward at the pretraining shape (256 univariate windows of 2048 steps, horizon
64) and at 32 windows of 7 channels, and ``copies()`` alone at 4 windows of 321 channels and a 720-step forecast
(where the all-at-once form's [B, C, S, H] temporaries were measured): milliseconds per call (10 after 3 warm-up)
and peak CUDA memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from tsham.experiments.common import header, write_results

from tsham.checkpoint import load_checkpoint
from tsham.forecasting.pipeline import DEFAULT_MODEL

BEFORE = "eee6e41"  # the last revision with the all-at-once copies
SHAPES = (("train step", 256, 1, 2048, 64), ("train step", 32, 7, 2048, 64), ("copies only", 4, 321, 2048, 720))


def old_prior_class(copy: str | None = None):
    """``SeasonalPrior`` as it was at :data:`BEFORE`: from ``copy`` (that revision's ``tsham/heads/seasonal.py``,
    for a machine without the git history) or else from git."""
    if copy is None:
        source = subprocess.run(["git", "show", f"{BEFORE}:tsham/heads/seasonal.py"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).resolve().parent).stdout
        copy = Path(tempfile.mkdtemp()) / "seasonal_before.py"
        copy.write_text(source)
    spec = importlib.util.spec_from_file_location("seasonal_before", copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules["seasonal_before"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module.SeasonalPrior


def timed(step, repeats: int = 10) -> tuple[float, float]:
    """Milliseconds per call of ``step`` and its peak CUDA memory in MiB (after 3 warm-up calls)."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3, torch.cuda.max_memory_allocated() / 2 ** 20


def train_step(model, x: torch.Tensor, y: torch.Tensor) -> None:
    """Forward + backward of ``model`` on ``x [B, T, C]`` against ``y [B, H, C]`` under bf16 autocast."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.loss(model(x, y.shape[1]), y)
    loss.backward()


@torch.no_grad()
def copies_call(model, x: torch.Tensor, y: torch.Tensor) -> None:
    """The prior's copies of ``x [B, T, C]`` over ``y``'s horizon (padded to whole patches, as a forward asks)."""
    model.prior.copies(x, torch.ones_like(x), y.shape[1] + model.config.patch.patch_length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench_prior_copies_h200")
    parser.add_argument("--before-file", help=f"a copy of rev {BEFORE}'s tsham/heads/seasonal.py (default: git show)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_prior_copies: needs CUDA (run it through the device tool)")
    model = load_checkpoint(DEFAULT_MODEL).to("cuda")
    prior = model.prior
    before = old_prior_class(args.before_file)(prior.config, prior.score.in_features, prior.patch_length,
                               len(model.config.head.quantiles)).to("cuda")
    versions = {BEFORE: before._copies, "now": prior._copies}
    rows = []
    for what, B, C, T, H in SHAPES:
        x = torch.randn(B, T, C, device="cuda").cumsum(1) * 0.1
        y = torch.randn(B, H, C, device="cuda")
        step = partial(copies_call if what == "copies only" else train_step, model, x, y)
        for version, copies in versions.items():
            prior._copies = copies  # the instance attribute shadows the method copies() calls
            ms, peak = timed(step)
            rows.append({"what": what, "B": B, "C": C, "version": version, "ms": ms, "peak_MiB": peak})
            model.zero_grad(set_to_none=True)
            print(rows[-1], flush=True)
    table = "\n".join(["| what | B | C | copies of | ms | peak MiB |", "|---|---|---|---|---|---|",
                       *(f"| {r['what']} | {r['B']} | {r['C']} | {r['version']} | {r['ms']:.1f} | "
                         f"{r['peak_MiB']:.0f} |" for r in rows)])
    print(table)
    write_results(args.name, {**header(), "model": str(DEFAULT_MODEL)}, rows, table)


if __name__ == "__main__":
    main()
