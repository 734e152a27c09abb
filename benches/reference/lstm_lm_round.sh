#!/bin/bash
# Interleaved rounds of the LSTM language-model step (issue 16): nas-rs's example and the
# PyTorch reference, at 1 and 2 threads. Run from the repository root after
#   cargo build --release -p nas-search --example lstm_lm_step
# with PyTorch importable by $PYTHON (default python3).
set -u
B=${CARGO_TARGET_DIR:-target}/release/examples/lstm_lm_step
PY=${PYTHON:-python3}
date -u; uptime
for round in 1 2; do
  for t in 1 2; do
    echo "== nas-rs threads $t round $round $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    NAS_THREADS=$t $B 6 64 64 256 65 | tail -1
    echo "== PyTorch threads $t round $round $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    $PY benches/reference/lstm_lm_step_ref.py 6 64 64 256 65 --threads $t | tail -1
  done
done
date -u; uptime
