#!/usr/bin/env bash
# Data-parallel DARTS over a real MPI (Open MPI, on loopback / shared memory only): installs
# openmpi-bin libopenmpi-dev libclang-dev with apt when missing, lints and builds nas with the
# `mpi` feature (rsmpi; bindgen needs libclang), then runs the same tiny first-order DARTS
# search (NB201 supernet, --sync-bn, 2 epochs of 4 steps) three ways: one plain process, one
# rank under mpirun, two ranks under mpirun. Checks: one rank's history.json is the plain
# run's byte for byte; two ranks (each on half of every batch) give the one-rank architecture
# weights and losses within float tolerance and the same genotype. Prints each wall time.
# Prints SKIPPED and why when apt or MPI cannot run here; any other failure is FAILED, exit 1.
#
# Usage: scripts/mpi-check.sh      (MPI_CHECK_KEEP=1 keeps the work directory)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
skip() { echo "SKIPPED: mpi-check: $*"; exit 0; }
fail() { echo "FAILED: mpi-check: $*"; exit 1; }
t_start=$(date +%s.%N)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

sudo=
if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
have_mpi() { command -v mpirun >/dev/null && command -v mpicc >/dev/null; }
have_clang() { ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; }
if ! have_mpi || ! have_clang; then
  command -v apt-get >/dev/null || skip "Open MPI or libclang is missing and there is no apt-get"
  [ "$(id -u)" = 0 ] || [ -n "$sudo" ] || skip "Open MPI or libclang is missing; not root and no password-less sudo for apt-get"
  echo "mpi-check: installing openmpi-bin libopenmpi-dev libclang-dev with apt-get"
  t0=$(now)
  if ! (export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq && $sudo apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev) \
        > /tmp/mpi-check-apt.log 2>&1; then
    skip "apt-get install openmpi-bin libopenmpi-dev libclang-dev failed (no network or no mirror?); see /tmp/mpi-check-apt.log"
  fi
  echo "mpi-check: apt-get took $(secs "$t0" "$(now)") s"
  have_mpi || skip "apt-get ran but mpirun/mpicc are still missing"
fi

t0=$(now)
cargo clippy -q -p nas-search -p nas-cli --all-targets --features nas-cli/mpi -- -D warnings \
  || fail "cargo clippy with --features mpi"
cargo build -q --release -p nas-cli --features mpi || fail "cargo build --features mpi"
mkdir -p target/mpi-check
cp target/release/nas target/mpi-check/nas
nas=$root/target/mpi-check/nas
echo "mpi-check: lint and build with --features mpi took $(secs "$t0" "$(now)") s"

work=$(mktemp -d /tmp/mpi-check.XXXXXX)
cleanup() { if [ "${MPI_CHECK_KEEP:-0}" = 1 ]; then echo "mpi-check: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# Open MPI as root needs both variables; everything stays on this host: processes talk through
# shared memory (btl self,vader) and the launcher's own channel on the loopback interface only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --mca btl self,vader --mca oob_tcp_if_include lo --mca btl_tcp_if_include lo)
args=(search --strategy darts --space nb201 --epochs 2 --channels 4 --cells 1 --limit-train 256
      --batch-size 32 --seed 1 --sync-bn)

run() { # name, then the command; wall time into $work/name.s
  local name=$1; shift
  local t=$(now)
  if ! timeout 300 "$@" > "$work/$name.out" 2> "$work/$name.err"; then
    if grep -qiE "orte_init|pmix|no available slots|could not find an available|failed to start" "$work/$name.err"; then
      skip "mpirun cannot start ranks here: $(grep -m1 -iE 'orte_init|pmix|slots|failed' "$work/$name.err")"
    fi
    cat "$work/$name.err" >&2
    fail "$name run failed (see above)"
  fi
  secs "$t" "$(now)" > "$work/$name.s"
}
NAS_THREADS=2 run plain "$nas" "${args[@]}" -o "$work/plain"
NAS_THREADS=2 run one "${mpi[@]}" -np 1 "$nas" "${args[@]}" -o "$work/one"
NAS_THREADS=1 run two "${mpi[@]}" -np 2 -x NAS_THREADS "$nas" "${args[@]}" -o "$work/two"

cmp -s "$work/plain/history.json" "$work/one/history.json" \
  || fail "one MPI rank's history.json differs from the plain run's"
grep -q "data-parallel on 2 mpi ranks" "$work/two.err" \
  || fail "the 2-rank run did not report running data-parallel on 2 MPI ranks"
command -v python3 >/dev/null || fail "python3 is needed to compare the runs"
python3 - "$work/one" "$work/two" <<'PY' || fail "two ranks differ from one rank beyond float tolerance"
import json, sys
one, two = (json.load(open(d + "/history.json")) for d in sys.argv[1:3])
assert len(one) == len(two) == 2, (len(one), len(two))
worst = 0.0
for a, b in zip(one, two):
    assert a["genotype"] == b["genotype"], (a["genotype"], b["genotype"])
    for key in ("alpha_normal",):
        for ra, rb in zip(a["arch"][key], b["arch"][key]):
            for x, y in zip(ra, rb):
                worst = max(worst, abs(x - y))
    for k in ("train_loss", "search_loss"):
        worst = max(worst, abs(a[k] - b[k]) / max(1.0, abs(a[k])))
    for k in ("train_acc", "search_acc"):
        assert abs(a[k] - b[k]) < 1e-9, (k, a[k], b[k])
print(f"mpi-check: 2 ranks vs 1 rank: largest difference {worst:.2e} (alphas, losses)")
assert worst < 1e-5, worst
PY
echo "mpi-check: wall time: plain $(cat "$work/plain.s") s, 1 rank $(cat "$work/one.s") s, 2 ranks $(cat "$work/two.s") s (tiny search, mostly start-up)"
echo "mpi-check: OK: 1 MPI rank = the plain run byte for byte; 2 ranks = 1 rank within tolerance ($(secs "$t_start" "$(now)") s in all)"
