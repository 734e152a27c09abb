#!/bin/bash
# Interleaved rounds of issue 20's inference and small-shape training-step comparisons with
# PyTorch (docs/PERF.md), so that load drifts on the shared machine hit both sides:
#   bash benches/reference/infer_round.sh [infer|main_step|both] [ROUNDS]
# Run from the repository root after
#   cargo build --release -p nas-search --example infer --example main_step
# with PyTorch importable by $PYTHON (default /tmp/ref/bin/python) and jemalloc at $JEMALLOC
# (preloaded for PyTorch when present: its fastest configuration). Each round, per thread
# count (1, 2): nas-rs, then PyTorch (contiguous NCHW and channels_last), then nas-rs again.
# $REPS: timed repetitions (infer: default 5; main_step: default 100); $NETS: infer's networks
# (default all four); $THREADS: thread counts (default "1 2"); $FORMATS: PyTorch's memory
# formats (default "nchw channels_last"). Every line carries the time and the 1-minute load
# average.
set -u
what=${1:-both}; rounds=${2:-1}
case $what in infer|main_step|both) ;; *) echo "$0: unknown mode \"$what\" (infer, main_step or both); usage: $0 [infer|main_step|both] [ROUNDS]" >&2; exit 2;; esac
case $rounds in ''|*[!0-9]*|0) echo "$0: ROUNDS must be a positive integer, got \"$rounds\"" >&2; exit 2;; esac
B=${CARGO_TARGET_DIR:-target}/release/examples
J=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
PY=${PYTHON:-/tmp/ref/bin/python}
PRE=""; [ -e "$J" ] && PRE=$J
NETS=${NETS:-nb201_conv3x3 nb201_best darts_v2_c36 darts_v2_c16}
THREADS=${THREADS:-1 2}
FORMATS=${FORMATS:-nchw channels_last}
stamp() { echo "== $1 $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"; }
infer() {  # threads
  local r=${REPS:-5}
  stamp "nas-rs infer threads=$1"; NAS_THREADS=$1 "$B/infer" "$r" 2 $NETS
  stamp "PyTorch infer threads=$1"
  LD_PRELOAD=$PRE "$PY" benches/reference/infer_ref.py --threads "$1" --reps "$r" --warmup 2 --nets $NETS --formats $FORMATS
}
main_step() {  # threads
  local r=${REPS:-100}
  stamp "nas-rs main_step threads=$1"; NAS_THREADS=$1 "$B/main_step" "$r" 20
  stamp "PyTorch main_step threads=$1"
  LD_PRELOAD=$PRE "$PY" benches/reference/main_step_ref.py --threads "$1" --reps "$r" --warmup 20 --formats $FORMATS
  stamp "nas-rs main_step threads=$1"; NAS_THREADS=$1 "$B/main_step" "$r" 20
}
date -u; uptime
for round in $(seq 1 "$rounds"); do
  echo "#### round $round"
  for t in $THREADS; do
    case $what in
      infer) infer $t ;;
      main_step) main_step $t ;;
      both) main_step $t; infer $t ;;
    esac
  done
done
date -u; uptime
