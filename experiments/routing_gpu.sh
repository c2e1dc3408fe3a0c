#!/usr/bin/env bash
# One device call's share of the routing-policy benchmark (#7): trains the cells of the given tasks of the full
# preset for at most MINUTES (no new cell starts after that), then packs the run folder into $OUT, since the
# device tool returns files, not folders. Unpack it here, carry runs/policies into the next call to resume, and
# report when every slice is done:
#   bash experiments/routing_gpu.sh 8 mqar synthetic                  # on the device, after `pip install -e .`
#   tar xzf policies.tgz && python -m tsham.experiments.routing_policies report runs/policies
# Slices must run one after another (they share learning_rates.json). GIFT and LTSF tasks need the ETT and M4
# files in TSHAM_DATA_DIR on the device (carry a copy: the device reaches no network).
set -euo pipefail
minutes=$1
shift
out=runs/policies
python -m tsham.experiments.routing_policies run --preset full --workers "${WORKERS:-14}" --device cuda \
  --minutes "$minutes" --tasks "$@" --out "$out"
tar czf "${OUT:?set OUT to the folder whose files come back}/policies.tgz" "$out"
