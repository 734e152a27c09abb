#!/bin/bash
# Before/after round for a kernel change, interleaved so that load drifts hit both sides:
#   bash benches/reference/ab_round.sh BEFORE_DIR AFTER_DIR [ROUNDS]
# Each directory holds the example binaries darts_step, nb201_fwd_bwd and lstm_lm_step built
# from one commit (cargo build --release -p nas-search --example ...; copy target/release/examples/X).
# Prints each measurement and the after/before ratio per round.
set -u
before=$1; after=$2; rounds=${3:-2}
med() { grep -o 'median[^:]*: [0-9.]*' | grep -o '[0-9.]*$'; }
nb201() { grep -o 'total [0-9.]*' | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
one() {  # label, extractor, args...
  local label=$1 ex=$2; shift 2
  local b a
  b=$("$before/$1" "${@:2}" 2>&1 | $ex); a=$("$after/$1" "${@:2}" 2>&1 | $ex)
  echo "$label threads $NAS_THREADS: before $b after $a ratio $(python3 -c "print(round($a/$b,3))") load $(cut -d' ' -f1 /proc/loadavg)"
}
date -u; uptime
for r in $(seq 1 "$rounds"); do
  for t in 1 2; do
    export NAS_THREADS=$t
    one "round $r DARTS step C=16 b64" med darts_step 3 64 16 8 darts
    one "round $r DARTS step C=4 b8" med darts_step 12 8 4 8 darts
    one "round $r NB201 fwd+bwd C=16 b64" nb201 nb201_fwd_bwd 5
    one "round $r LSTM LM step" med lstm_lm_step 6 64 64 256 65
  done
done
date -u; uptime
