#!/usr/bin/env bash
# One device call's share of the #6 probe grid: runs the given presets of experiments/probe_sweep.py for at most
# MINUTES (no cell starts in the last 3; finished cells are skipped and cut ones resume, so calls add up), then
# packs the run folder into $OUT (also when the run fails), since the device tool returns files, not folders. The device's working tree is limited (64 MiB), so carry .gpu-lite and a slim
# copy of the run (logs and empty placeholders of the finished cells, loop states of the cut ones) and merge what
# comes back (probes.tgz, or probes.tgz.part00, .part01, ... when cut cells' loop states, ~2 MB each, and finished
# cells' weights, ~0.7 MB each at d64x2, make it larger than 16 MB):
#   python -m tsham.experiments.probe_sweep slim runs/probes runs/slim          # here, before the call
#   PROBE_RUN=runs/slim bash experiments/probe_gpu.sh 8 full                    # on the device (carry runs/slim)
#   cat probes.tgz* | tar xz -C /tmp/back && python -m tsham.experiments.probe_sweep merge /tmp/back/runs/slim runs/probes
# A cell saves its training state every minute (probe_sweep run_cell), so one cut with the call resumes in the next.
# On a cold machine keep MINUTES at or below the call's limit less 150 s (7.5 for 600 s): pip, the pool's start and
# the exit pack took 84-150 s beside the minutes on 2026-12-02 (8.6, 8.2 and 8.0 overran 600 s, 5.5 overran 460 s,
# the more so with cut cells to pack; the minute pack came back whole every time). A cell's speed does not fall
# with WORKERS up to 21 (A at 64 tokens, CUDA graphs: 15.7 steps/s at 9 and at 21), so run as many cells at once
# as their loop states let travel.
# WORKERS cells train at once, spread over the GPUs (gpu_pool.sh: 28 per GPU under MPS). Not under `timeout`:
# it signals the whole process group, so every worker dies with its cell half-trained.
set -uo pipefail
minutes=$1
shift
out=${PROBE_RUN:-runs/probes}
source "$(dirname "$0")/gpu_pool.sh"
pool_start "$out" probes.tgz
python -m tsham.experiments.probe_sweep run --preset "$@" --workers "$workers" --device cuda \
  --minutes "$minutes" --out "$out" $graph_flag
