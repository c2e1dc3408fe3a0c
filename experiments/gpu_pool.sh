# Sourced by probe_gpu.sh and routing_gpu.sh: the setup a device call's pool of cells shares.
#   pool_start FOLDER ARCHIVE   sets $workers and $graph_flag, starts an MPS daemon, packs FOLDER into
#                               $OUT/ARCHIVE (or its parts, pool_pack) every minute and on exit, and copies
#                               everything the script prints from then on into $OUT/pool.log
# The log is what survives a call cut at its time limit: output piped through `tail` dies with the call (a lost
# call on 2026-11-30 left no trace of why).
# MPS (on unless MPS=0, where nvidia-cuda-mps-control exists and no daemon runs yet) lets the workers' small
# kernels run side by side instead of time-sliced: on one H200, 14 probe cells train 158.7 steps/s in all with it
# and 100.4 without, 28 cells 203.8 (results/bench_probe_step_h200.md), so WORKERS defaults to 28 per GPU with
# MPS and 14 without. The daemon only shares the GPU between this call's processes; it changes no device
# setting and is stopped on exit. GRAPH=1 (the default) sets $graph_flag to --cuda-graph: each cell replays its
# training step as a CUDA graph (tsham/training/cuda_graph.py), which frees the host the eager steps ran out of.
pool_start() {
  local folder=$1 archive=$2 gpus started=0
  exec > >(tee -a "${OUT:?set OUT to the folder whose files come back}/pool.log") 2>&1
  gpus=$(nvidia-smi -L | wc -l)
  # a running daemon, not its pipe file, which outlives a daemon told to quit (the next call on a warm machine
  # then ran without MPS); the [l] keeps grep from finding its own command line
  if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null \
      && ! grep -qsa 'nvidia-cuda-mps-contro[l]' /proc/[0-9]*/cmdline; then
    nvidia-cuda-mps-control -d && started=1
  fi
  workers=${WORKERS:-$(( (started ? 28 : 14) * gpus ))}
  case ${GRAPH:-1} in  # the callers pass $graph_flag unquoted: empty means no argument
    1) graph_flag=--cuda-graph ;;
    0) graph_flag= ;;
    *) echo "GRAPH must be 0 or 1; got $GRAPH" >&2; exit 2 ;;
  esac
  echo "$gpus GPU(s), MPS $([ $started = 1 ] && echo on || echo off), $workers workers, CUDA graphs ${GRAPH:-1}"
  # a call cut at its time limit may not finish the EXIT trap: pack the folder every minute meanwhile. Its output
  # goes nowhere: a sleep still holding the log's pipe would keep the call open.
  # The TERM of the exit trap waits for a pack under way (bash runs a trap between commands; `wait` on the sleep
  # returns at once): killed mid-pack, its tar went on writing into the archive the trap's own pack had just
  # renamed (65 MB of garbage, in a test).
  ( trap 'rm -f "$OUT/.$archive.$BASHPID"*; exit 0' TERM  # a pack cut between its steps leaves no temporary file
    while sleep 60 & wait $!; do pool_pack "$folder" "$archive"; done ) >/dev/null 2>&1 &
  # shellcheck disable=SC2064  # expand now: the trap runs after this function's locals are gone
  trap "kill $! 2>/dev/null; wait $! 2>/dev/null; pool_pack '$folder' '$archive';
        [ $started = 1 ] && echo quit | nvidia-cuda-mps-control" EXIT
}

# pool_pack FOLDER ARCHIVE: FOLDER as $OUT/ARCHIVE, or as ARCHIVE.part00, .part01, ... where it exceeds the 16 MB
# a returned file may have (cut cells' loop states are ~2 MB each; the device returns 8 files, so 7 parts);
# `cat ARCHIVE*` joins either. Packed and split under temporary names first, the old archive replaced only once
# the new one is whole: the TERM of a call's time limit once cut a pack mid-write and left a truncated archive.
# tar's status 1 only says a file changed while it read.
pool_pack() {
  local folder=$1 archive=$2 tmp part
  tmp="$OUT/.$archive.$BASHPID"
  tar czf "$tmp" "$folder"
  [ $? -le 1 ] || { rm -f "$tmp"; return 1; }
  if [ "$(stat -c %s "$tmp")" -le 15000000 ]; then
    mv "$tmp" "$OUT/$archive" && rm -f "$OUT/$archive".part*
    return
  fi
  split -b 15000000 -d -a 2 "$tmp" "$tmp.part" || { rm -f "$tmp" "$tmp".part*; return 1; }
  rm -f "$tmp" "$OUT/$archive" "$OUT/$archive".part*
  for part in "$tmp".part*; do mv "$part" "$OUT/$archive.part${part##*.part}"; done
}
