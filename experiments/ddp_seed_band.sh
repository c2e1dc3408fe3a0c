#!/usr/bin/env bash
# The #8 runs on one host with N GPUs (DEVICES, default 2), in one device call:
#   1. weak scaling, each run alone on the host: 1 GPU x 128 windows, then DDP N x 128 (150 steps);
#   2. the seed band at a global batch of 256: three seeds of 1 GPU x 256/N x N micro-batches accumulated (a step
#      composed as a DDP step is: N batches, each of one horizon and one channel layout), side by side on the
#      GPUs, tests/training on a spare GPU; then three seeds of DDP N x 256/N, then FSDP N x 256/N seed 0 if time
#      is left.
# PHASE=throughput or PHASE=band runs one part only. Writes run folders under $1 (default runs/); no new run
# starts after DEADLINE_S seconds. Summarise with `python -m tsham.experiments.ddp_scaling summary`.
# Usage: DEVICES=4 bash experiments/ddp_seed_band.sh OUT [STEPS] [DEADLINE_S]
set -uo pipefail
out=${1:-runs}; steps=${2:-300}; deadline=${3:-540}; n=${DEVICES:-2}; per=$((256 / n)); start=$SECONDS
mkdir -p "$out"
run() { python -m tsham.experiments.ddp_scaling run --synthetic 400 "$@"; }
left() { [ $((SECONDS - start)) -lt "$deadline" ]; }
phase=${PHASE:-all}
if [ "$phase" != band ]; then
  CUDA_VISIBLE_DEVICES=0 run --devices 1 --batch-size 128 --steps 150 --out "$out/tput_1x128" > "$out/tput_1x128.log" 2>&1
  left && run --devices "$n" --batch-size 128 --steps 150 --out "$out/tput_${n}x128" > "$out/tput_${n}x128.log" 2>&1
fi
[ "$phase" = throughput ] && exit 0
for seed in 0 1 2; do  # one seed per GPU (GPU 0 again if there are only 2)
  CUDA_VISIBLE_DEVICES=$((seed % n)) run --devices 1 --batch-size "$per" --accumulate "$n" --steps "$steps" \
    --seed "$seed" --out "$out/acc_s$seed" > "$out/acc_s$seed.log" 2>&1 &
  [ "$n" -lt 3 ] && [ "$seed" -eq 1 ] && wait
done
[ "$n" -ge 4 ] && CUDA_VISIBLE_DEVICES=3 python -m pytest -q -x tests/training > "$out/pytest_training.log" 2>&1 &
wait
for seed in 0 1 2; do
  left && run --devices "$n" --batch-size "$per" --steps "$steps" --seed "$seed" --out "$out/ddp_s$seed" \
    > "$out/ddp_s$seed.log" 2>&1
done
left && run --devices "$n" --batch-size "$per" --steps "$steps" --strategy fsdp --seed 0 --out "$out/fsdp_s0" \
  > "$out/fsdp_s0.log" 2>&1
echo "done in $((SECONDS - start)) s"
