#!/usr/bin/env bash
# Assembles each PTX file in DIR for sm_90 with ptxas and prints registers, spills, stack and
# shared memory per kernel; fails when a hot kernel (GEMM, implicit-GEMM convolutions) spills.
# Usage: scripts/ptxas-report.sh PTXAS DIR
set -euo pipefail
ptxas=$1
dir=$2
hot='^(mm_sgemm|mm_sgemm_tf32|cv_forward|cv_forward_tf32|cv_backward_weight|cv_backward_weight_tf32|cv_backward_input|cv_dw_forward)$'
report=$(for f in "$dir"/*.ptx; do "$ptxas" -arch=sm_90 -v "$f" -o /dev/null 2>&1; done | awk '
  /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); k = substr($0, RSTART + 1, RLENGTH - 2) }
  /bytes stack frame/ {
    line = $0; sub(/^[^0-9]*/, "", line); split(line, f, /[ ,]+/)
    stack[k] = f[1]; spill[k] = f[5] + f[9]
  }
  /Used [0-9]+ registers/ {
    regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
    smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
    printf "%-28s %5s %8s %8s %8s\n", k, regs, spill[k], stack[k], smem
  }')
printf "%-28s %5s %8s %8s %8s\n" kernel regs spill stack smem
echo "$report"
bad=$(echo "$report" | awk -v hot="$hot" '$1 ~ hot && $3 != 0 { print $1 }')
if [ -n "$bad" ]; then
  echo "ptxas: hot kernels spill registers: $bad" >&2
  exit 1
fi
