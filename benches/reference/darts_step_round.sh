#!/bin/bash
# One interleaved round of the DARTS search-step comparison of docs/PERF.md: nas-rs's default
# mode four times, PyTorch (channels-last + jemalloc, contiguous + glibc malloc) between them,
# then nas-rs's two recomputation modes. Run from the repository root after
#   cargo build --release -p nas-search --example darts_step
# with PyTorch importable by $PYTHON (default python3) and jemalloc at $JEMALLOC.
set -u
B=${CARGO_TARGET_DIR:-target}/release/examples/darts_step
J=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
PY=${PYTHON:-python3}
REF=benches/reference/darts_step_ref.py
date -u; uptime
ours() { echo "== nas-rs $1 $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"; NAS_THREADS=2 $B 4 64 16 8 darts ${2:-} 2>&1 | tail -4; }
pt() { echo "== PyTorch $1 $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"; shift; env "$@" 2>&1 | tail -4; }
ours default
pt "channels_last jemalloc" LD_PRELOAD=$J timeout 400 $PY $REF 3 2 --channels-last
ours default
pt "contiguous glibc" timeout 400 $PY $REF 3 2
ours default
pt "channels_last jemalloc" LD_PRELOAD=$J timeout 400 $PY $REF 3 2 --channels-last
ours default
ours "recompute 4 cells" 4
ours "recompute every cell" recompute
date -u; uptime
