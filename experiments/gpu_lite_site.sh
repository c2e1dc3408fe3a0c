#!/usr/bin/env bash
# Builds .gpu-lite/ from .gpu/site.tar.xz (../shared/gpu/make-site.sh): gluonts and its pydantic stack, and
# fla-core (the fused backend's gated delta rule, Triton only; tilelang, 50 of the 54 MB, is left out). 3 MB
# instead of 54: the device's 64 MiB working-tree limit then leaves room to carry run folders and the evaluation
# data whole. Carry ".gpu-lite" and start the device command with `source .gpu-lite/activate.sh &&`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/site.tar.xz ] || { echo "no .gpu/site.tar.xz: run bash ../shared/gpu/make-site.sh first" >&2; exit 1; }
grep -qx '/.gpu-lite/' .git/info/exclude 2>/dev/null || echo '/.gpu-lite/' >> .git/info/exclude
tmp=$(mktemp -d)
tar xJf .gpu/site.tar.xz -C "$tmp" --wildcards './gluonts*' './pydantic*' './annotated_types*' './typing_inspection*' \
    './fla' './fla_core*'
mkdir -p .gpu-lite
XZ_OPT='-6 -T2' tar cJf .gpu-lite/site.tar.xz -C "$tmp" .
rm -rf "$tmp"
# the same unpacking as .gpu/activate.sh, into a folder of its own so the two never mix
cat > .gpu-lite/activate.sh <<'ACT'
mkdir -p /tmp/gpusite-lite && { [ -f /tmp/gpusite-lite/.done ] || { tar xJf .gpu-lite/site.tar.xz -C /tmp/gpusite-lite && touch /tmp/gpusite-lite/.done; }; }
export PYTHONPATH=/tmp/gpusite-lite${PYTHONPATH:+:$PYTHONPATH}
ACT
echo "built .gpu-lite/site.tar.xz ($(du -h .gpu-lite/site.tar.xz | cut -f1))"
