#!/bin/bash
# Before/after of the device-generic core (issue 12), interleaved with the PyTorch references:
# A = a build of the parent commit, B = this tree, both built with
#   cargo build --release -p nas-search --example darts_step --example nb201_fwd_bwd
#   cargo build --release -p nas-cli
# A's target directory is $A (e.g. a worktree of the parent with its own target/).
# PyTorch importable by $PYTHON, jemalloc at $JEMALLOC. Run from the repository root.
set -u
A=${A:?set A to the baseline target directory}/release
B=${CARGO_TARGET_DIR:-target}/release
J=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
PY=${PYTHON:-python3}
DREF=benches/reference/darts_step_ref.py
NREF=benches/reference/nb201_net_ref.py
say() { echo "== $1 $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"; }
darts() { say "$1 darts C=$4 batch=$3 threads=$2"; NAS_THREADS=$2 $5/examples/darts_step 4 $3 $4 8 darts 2>&1 | tail -3; }
nb201() { say "$1 nb201 fwd+bwd threads=$2"; NAS_THREADS=$2 $3/examples/nb201_fwd_bwd 5 2>&1 | tail -2; }
date -u; uptime
for round in 1 2; do
  for t in 2 1; do
    darts A $t 64 16 $A; darts B $t 64 16 $B
  done
  say "PyTorch darts C=16 batch=64 channels_last jemalloc threads=2"
  LD_PRELOAD=$J timeout 400 $PY $DREF 3 2 --channels-last 2>&1 | tail -2
  for t in 2 1; do
    darts A $t 8 4 $A; darts B $t 8 4 $B
  done
  say "PyTorch darts C=4 batch=8 jemalloc threads=2"
  LD_PRELOAD=$J timeout 400 $PY $DREF 4 2 --c=4 --batch=8 2>&1 | tail -2
  for t in 2 1; do
    nb201 A $t $A; nb201 B $t $B
  done
  say "PyTorch nb201 channels_last jemalloc"
  LD_PRELOAD=$J timeout 400 $PY $NREF --threads 1 2 --reps 5 --formats channels_last 2>&1 | grep '/fwd_bwd {'
done
for w in A B; do
  say "$w nas search (README default)"
  d=$(mktemp -d)
  if [ $w = A ]; then bin=$A/nas; else bin=$B/nas; fi
  /usr/bin/time -f "%e s wall, %M KiB peak" $bin search --out $d/run 2>&1 | tail -5
  rm -rf $d
done
date -u; uptime
