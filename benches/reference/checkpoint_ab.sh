#!/bin/bash
# before (3bc163b: hand-written recompute) vs after (7d27800: nas-tensor checkpoint), interleaved
date -u; uptime
for mode in 4 recompute; do
 for side in before after; do
  if [ $side = before ]; then B=${BEFORE:?path of the before build target dir}/release/examples/darts_step; else B=${AFTER:-target}/release/examples/darts_step; fi
  echo "== $side mode=$mode $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  NAS_THREADS=2 /usr/bin/time -f "peak %M KiB wall %e s" $B 4 64 16 8 darts $mode 2>&1 | tail -5
 done
done
date -u; uptime
