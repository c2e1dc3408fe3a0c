#!/usr/bin/env bash
# Builds .gpu-lite/ from .gpu/site.tar.xz (../shared/gpu/make-site.sh): only gluonts and its pydantic stack,
# what the torch backend (TSHAM_BACKEND=torch) needs on the device. 2 MB instead of 53: the device's 64 MiB
# working-tree limit then leaves room to carry run folders and the evaluation data whole. Carry ".gpu-lite"
# and start the device command with `source .gpu-lite/activate.sh &&`. The fused backend needs the full .gpu:
# fla-core alone (0.5 MB) imports, but on the H200 with Triton 3.6 its gated backward refuses to run without
# tilelang (fla's guard for its issue #640; tested 2026-12-02), and tilelang is 50 of .gpu's 54 MB.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/site.tar.xz ] || { echo "no .gpu/site.tar.xz: run bash ../shared/gpu/make-site.sh first" >&2; exit 1; }
grep -qx '/.gpu-lite/' .git/info/exclude 2>/dev/null || echo '/.gpu-lite/' >> .git/info/exclude
tmp=$(mktemp -d)
tar xJf .gpu/site.tar.xz -C "$tmp" --wildcards './gluonts*' './pydantic*' './annotated_types*' './typing_inspection*'
mkdir -p .gpu-lite
XZ_OPT='-6 -T2' tar cJf .gpu-lite/site.tar.xz -C "$tmp" .
rm -rf "$tmp"
# the same unpacking as .gpu/activate.sh, into a folder of its own so the two never mix
cat > .gpu-lite/activate.sh <<'ACT'
mkdir -p /tmp/gpusite-lite && { [ -f /tmp/gpusite-lite/.done ] || { tar xJf .gpu-lite/site.tar.xz -C /tmp/gpusite-lite && touch /tmp/gpusite-lite/.done; }; }
export PYTHONPATH=/tmp/gpusite-lite${PYTHONPATH:+:$PYTHONPATH}
ACT
echo "built .gpu-lite/site.tar.xz ($(du -h .gpu-lite/site.tar.xz | cut -f1))"
