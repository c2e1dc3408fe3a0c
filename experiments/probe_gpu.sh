#!/usr/bin/env bash
# One device call's share of the #6 probe grid: runs the given presets of experiments/probe_sweep.py for at most
# MINUTES (no cell starts that would end later, by the median duration of the cells done so far; finished cells
# are skipped, so calls add up), then packs the run folder into $OUT (also when the run fails), since the device
# tool returns files, not folders. Unpack it here and carry runs/probes into the next call; collect and report
# when the grid is done:
#   bash experiments/probe_gpu.sh 8 full                          # on the device, after `pip install -e .`
#   tar xzf probes.tgz && python -m tsham.experiments.probe_sweep collect runs/probes --output rows.csv.gz
# WORKERS (default 14 per visible GPU) cells train at once, spread over the GPUs (the cells are launch-bound, so
# several share a GPU well). Not under `timeout`: it signals the whole process group, so every worker dies with
# its cell half-trained.
set -uo pipefail
minutes=$1
shift
out=runs/probes
gpus=$(nvidia-smi -L | wc -l)
trap 'tar czf "${OUT:?set OUT to the folder whose files come back}/probes.tgz" "$out"' EXIT
python -m tsham.experiments.probe_sweep run --preset "$@" --workers "${WORKERS:-$((14 * gpus))}" --device cuda \
  --minutes "$minutes" --out "$out"
