#!/bin/bash
# Idle-machine round: small DARTS step and LSTM LM step, nas-rs vs PyTorch, interleaved.
cd "$(dirname "$0")/../.."
B=target/release/examples
PY=${PYTHON:-python3}
J=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
date -u; uptime
for r in 1 2; do
  for t in 1 2; do
    echo "== nas-rs small DARTS step threads $t round $r load $(cut -d' ' -f1 /proc/loadavg)"
    NAS_THREADS=$t $B/darts_step 12 8 4 8 darts | grep median
    echo "== PyTorch small DARTS step threads $t round $r"
    LD_PRELOAD=$J $PY benches/reference/darts_step_ref.py 6 $t --channels-last --c=4 --batch=8 2>&1 | tail -1
    echo "== nas-rs LSTM step threads $t round $r load $(cut -d' ' -f1 /proc/loadavg)"
    NAS_THREADS=$t $B/lstm_lm_step 6 64 64 256 65 | tail -1
    echo "== PyTorch LSTM step threads $t round $r"
    $PY benches/reference/lstm_lm_step_ref.py 6 64 64 256 65 --threads $t | tail -1
  done
done
date -u; uptime
