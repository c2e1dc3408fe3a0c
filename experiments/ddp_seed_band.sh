#!/usr/bin/env bash
# The #8 seed-band run on one host with 2 GPUs: three seeds at one GPU x 256 windows and three under DDP at
# 2 x 128 (equal global batch), then FSDP 2 x 128 if time is left. PHASE=accumulate runs three seeds of
# 1 GPU x 128 x 2 accumulated instead (a step composed of two batches, as a DDP step is), one after another.
# Writes run folders under $1 (default runs/).
# Usage: bash experiments/ddp_seed_band.sh OUT [STEPS] [DEADLINE_S]
set -uo pipefail
out=${1:-runs}; steps=${2:-300}; deadline=${3:-540}; start=$SECONDS
run() { python -m tsham.experiments.ddp_scaling run --steps "$steps" --synthetic 400 "$@"; }
left() { [ $((SECONDS - start)) -lt "$deadline" ]; }
if [ "${PHASE:-}" = accumulate ]; then
  for seed in 0 1 2; do  # on whichever GPU CUDA_VISIBLE_DEVICES names, so the other can do other work
    run --devices 1 --batch-size 128 --accumulate 2 --seed "$seed" --out "$out/acc_s$seed" > "$out/acc_s$seed.log" 2>&1
  done
  exit
fi
CUDA_VISIBLE_DEVICES=0 run --devices 1 --batch-size 256 --seed 0 --out "$out/one_s0" > "$out/one_s0.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 run --devices 1 --batch-size 256 --seed 1 --out "$out/one_s1" > "$out/one_s1.log" 2>&1
wait
CUDA_VISIBLE_DEVICES=0 run --devices 1 --batch-size 256 --seed 2 --out "$out/one_s2" > "$out/one_s2.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 python -m pytest -q -x tests/training > "$out/pytest_training.log" 2>&1
wait
for seed in 0 1 2; do
  left && run --devices 2 --batch-size 128 --seed "$seed" --out "$out/ddp_s$seed" > "$out/ddp_s$seed.log" 2>&1
done
left && run --devices 2 --batch-size 128 --strategy fsdp --seed 0 --out "$out/fsdp_s0" > "$out/fsdp_s0.log" 2>&1
echo "done in $((SECONDS - start)) s"
