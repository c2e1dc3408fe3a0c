#!/usr/bin/env bash
# One device call's share of the routing-policy benchmark (#7): trains the cells of the given tasks of the full
# preset for at most MINUTES (no cell starts that would end later, by the median duration of the cells done so
# far), then packs the run folder into $OUT (also when the run fails), since the device tool returns files, not
# folders. Unpack it here, carry runs/policies into the next call to resume, and report when every slice is done:
#   WORKERS=56 bash experiments/routing_gpu.sh 8 mqar synthetic      # on the device, after `pip install -e .`
#   tar xzf policies.tgz && python -m tsham.experiments.routing_policies report runs/policies
# WORKERS cells train at once, spread over the GPUs (gpu_pool.sh: 28 per GPU under MPS, 14 without); on the
# 2-GPU kind under MPS, 56 workers took a median 124 s per synthetic cell, 131 s per ETTh1 cell and 192 s per
# probe-D cell (1500 steps; about 120 cells in a 7-minute call, 2026-11-30); on one H200 with CUDA graphs
# (GRAPH=1, the default) 28 workers took a median 106 s per MQAR cell and 202 s per probe-B cell (about 85 cells
# in a 9-minute call, 2026-12-01), and 268 s per probe-A cell (56 cells a call). Not under
# `timeout`: it signals the whole process group, so every worker dies with its cell half-trained. Slices must run
# one after another (they share learning_rates.json). GIFT and LTSF tasks need the ETT and M4 files in
# TSHAM_DATA_DIR on the device (carry a copy: the device reaches no network).
set -uo pipefail
minutes=$1
shift
out=runs/policies
source "$(dirname "$0")/gpu_pool.sh"
pool_start "$out" policies.tgz
python -m tsham.experiments.routing_policies run --preset full --workers "$workers" \
  --device cuda --minutes "$minutes" --tasks "$@" --out "$out" $graph_flag
