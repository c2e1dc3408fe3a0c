#!/usr/bin/env bash
# One device call's share of the #6 probe grid: runs the given presets of experiments/probe_sweep.py for at most
# MINUTES (no new cell starts after that; finished cells are skipped, so calls add up), then packs the run folder
# into $OUT, since the device tool returns files, not folders. Unpack it here and carry runs/probes into the
# next call; collect and report when the grid is done:
#   bash experiments/probe_gpu.sh 8 full                          # on the device, after `pip install -e .`
#   tar xzf probes.tgz && python -m tsham.experiments.probe_sweep collect runs/probes --output rows.csv.gz
# WORKERS (default 14) cells train at once on one GPU (the cells are launch-bound, so they share it well).
set -euo pipefail
minutes=$1
shift
out=runs/probes
python -m tsham.experiments.probe_sweep run --preset "$@" --workers "${WORKERS:-14}" --device cuda \
  --minutes "$minutes" --out "$out"
tar czf "${OUT:?set OUT to the folder whose files come back}/probes.tgz" "$out"
