#!/usr/bin/env bash
# Builds .gpu-lite/ from .gpu/site.tar.xz (../shared/gpu/make-site.sh): only gluonts and its pydantic stack,
# what the torch backend (TSHAM_BACKEND=torch) needs on the device. 2 MB instead of 53: the device's 64 MiB
# working-tree limit then leaves room to carry run folders and the evaluation data whole. Carry ".gpu-lite"
# and start the device command with `source .gpu-lite/activate.sh &&`. The fused backend needs the full .gpu:
# fla-core alone (0.5 MB) imports, but on the H200 with Triton 3.6 its gated backward refuses to run without
# tilelang (fla's guard for its issue #640; tested 2026-12-02), and tilelang is 50 of .gpu's 54 MB.
# `bash experiments/gpu_lite_site.sh fla` builds .gpu-fla/ instead: the same plus fla-core without tilelang,
# the site where tsham's dispatch must take fla for inference and fall back to the torch chunks for training
# (tsham.ops.gated_delta.fla_path.fla_backward_blocked); carry ".gpu-fla", `source .gpu-fla/activate.sh`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/site.tar.xz ] || { echo "no .gpu/site.tar.xz: run bash ../shared/gpu/make-site.sh first" >&2; exit 1; }
case ${1:-} in
  "") name=gpu-lite; extra=() ;;
  fla) name=gpu-fla; extra=('./fla' './fla_core*') ;;
  *) echo "usage: $0 [fla]" >&2; exit 2 ;;
esac
grep -qxF "/.$name/" .git/info/exclude 2>/dev/null || echo "/.$name/" >> .git/info/exclude
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT  # also when a step fails
tar xJf .gpu/site.tar.xz -C "$tmp" --wildcards './gluonts*' './pydantic*' './annotated_types*' './typing_inspection*' \
  ${extra[@]+"${extra[@]}"}  # the guard: an empty array is "unbound" to set -u before bash 4.4
mkdir -p ".$name"
XZ_OPT='-6 -T2' tar cJf ".$name/site.tar.xz" -C "$tmp" .
# the same unpacking as .gpu/activate.sh, into a folder of its own so the sites never mix
cat > ".$name/activate.sh" <<ACT
mkdir -p /tmp/gpusite-$name && { [ -f /tmp/gpusite-$name/.done ] || { tar xJf .$name/site.tar.xz -C /tmp/gpusite-$name && touch /tmp/gpusite-$name/.done; }; }
export PYTHONPATH=/tmp/gpusite-$name\${PYTHONPATH:+:\$PYTHONPATH}
ACT
echo "built .$name/site.tar.xz ($(du -h ".$name/site.tar.xz" | cut -f1))"
