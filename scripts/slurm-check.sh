#!/usr/bin/env bash
# The Slurm executor against a real Slurm: installs slurm-wlm and munge with apt (if missing),
# starts a one-node cluster on loopback (munged, slurmctld, slurmd; no systemd; the config
# generated from `hostname -s`, cgroup plugins off: proctrack/linuxproc, task/none,
# jobacct_gather/none), runs the same 4-trial training search locally and through Slurm,
# checks that the trial records are identical (timing aside), prints the wall times, and stops
# every daemon it started (by pid, also on failure or Ctrl-C; each daemon also stops by itself
# after SLURM_CHECK_LIFETIME seconds, 600 by default). Everything listens on 127.0.0.1 only. Prints SKIPPED and why when the
# packages cannot be installed or the daemons cannot run here.
#
# Usage: scripts/slurm-check.sh            (builds target/release/nas when missing;
#                                          NAS_BIN=PATH runs another nas binary)
# Env:   NAS_SLURM_POLL_MS (default here 500: how often the executor looks at the queue),
#        SLURM_CHECK_KEEP=1 keeps the work directory (config, logs, both searches).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
skip() { echo "SKIPPED: slurm-check: $*"; exit 0; }
fail() { echo "FAILED: slurm-check: $*"; exit 1; }

sudo=
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || skip "not root and no password-less sudo (slurmd must run as root)"
  sudo="sudo -n"
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm-wlm and munge are not installed and there is no apt-get"
  echo "slurm-check: installing slurm-wlm munge with apt-get"
  if ! (export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends slurm-wlm munge) \
        > /tmp/slurm-check-apt.log 2>&1; then
    skip "apt-get install slurm-wlm munge failed (no network or no mirror?); see /tmp/slurm-check-apt.log"
  fi
fi
nas=${NAS_BIN:-$root/target/release/nas}
[ -x "$nas" ] || cargo build --release -p nas-cli

work=$(mktemp -d /tmp/slurm-check.XXXXXX)
pids=()
cleanup() {
  set +e
  if [ -n "${SLURM_CONF:-}" ] && [ -e "$work/slurmctld.pid" ]; then
    ids=$(squeue -h -o %i 2>/dev/null)
    [ -n "$ids" ] && scancel $ids >/dev/null 2>&1
    for _ in $(seq 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do $sudo kill "${pids[i]}" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && $sudo kill -9 "$p" 2>/dev/null
  done
  if [ "${SLURM_CHECK_KEEP:-0}" = 1 ]; then echo "slurm-check: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

host=$(hostname -s)
# Every daemon runs under `timeout`: it stops by itself after this many seconds even when this
# script is killed outright (SIGKILL skips the clean-up below).
life=${SLURM_CHECK_LIFETIME:-600}
cpus=$(nproc)
# Ports chosen from the pid so that two checks on one machine do not collide.
port=$((20000 + ($$ % 20000)))
mkdir -p "$work/state" "$work/spool" "$work/munge"
head -c 1024 /dev/urandom > "$work/munge/munge.key"
chmod 700 "$work/munge"; chmod 400 "$work/munge/munge.key"
cat > "$work/slurm.conf" <<EOF
ClusterName=nascheck
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$work/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge=300
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=check Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf

munged=$(command -v munged || echo /usr/sbin/munged)
$sudo timeout -k 10 "$life" "$munged" -F --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
  --seed-file="$work/munge/munge.seed" > "$work/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/munge/munge.sock" ] && break; sleep 0.1; done
[ -S "$work/munge/munge.sock" ] || skip "munged did not start here: $(tail -3 "$work/munged.out" "$work/munge/munged.log" 2>/dev/null | tr '\n' ' ')"
$sudo env SLURM_CONF="$SLURM_CONF" timeout -k 10 "$life" slurmctld -D -i > "$work/slurmctld.out" 2>&1 &
pids+=($!)
$sudo env SLURM_CONF="$SLURM_CONF" timeout -k 10 "$life" slurmd -D -N "$host" > "$work/slurmd.out" 2>&1 &
pids+=($!)
state=
for _ in $(seq 150); do
  state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || skip "the one-node Slurm did not come up (node state '${state:-none}'): $(tail -2 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null | tr '\n' ' ')"
listening=$(ss -ltnH 2>/dev/null | awk '{print $4}' | grep -E ":($port|$((port + 1)))\$" | sort -u | tr '\n' ' ' || true)
echo "slurm-check: one-node Slurm up ($(sinfo -V), node $host, $cpus CPUs, listening on ${listening:-?})"

args=(--json search --data digits --strategy random -n 4 --epochs 1 --limit-train 500
      --channels 4 --workers 2 --seed 5)
t0=$(date +%s.%N)
"$nas" "${args[@]}" --out "$work/local" > "$work/local.json"
t1=$(date +%s.%N)
NAS_SLURM_POLL_MS=${NAS_SLURM_POLL_MS:-500} timeout 300 \
  "$nas" "${args[@]}" --executor slurm --slurm-partition check --slurm-time 10 --out "$work/slurm" > "$work/slurm.json" \
  || fail "the search through Slurm failed (exit $?); logs in $work (SLURM_CHECK_KEEP=1 keeps them)"
t2=$(date +%s.%N)
python3 - "$work/local.json" "$work/slurm.json" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
t0, t1, t2 = map(float, sys.argv[3:6])
strip = lambda r: [{k: v for k, v in t.items() if k != "wall_time_s"} for t in r["trials"]]
if strip(a) != strip(b) or len(strip(a)) != 4:
    print("FAILED: slurm-check: the trial records differ between local and Slurm")
    sys.exit(1)
local, slurm = t1 - t0, t2 - t1
print(f"slurm-check: OK: 4 trials, records identical (timing aside); "
      f"local {local:.2f} s, slurm {slurm:.2f} s, "
      f"difference per trial {(slurm - local) / 4:.2f} s")
EOF
# A partition that does not exist: refused by `sbatch --test-only` before anything is written.
if "$nas" search --evaluator nb201-table -n 2 --executor slurm --slurm-partition nope \
    --out "$work/nope" > "$work/nope.out" 2>&1 || [ $? != 1 ]; then
  fail "a search on partition 'nope' did not exit 1: $(cat "$work/nope.out")"
fi
grep -q "sbatch refuses these settings" "$work/nope.out" && [ ! -e "$work/nope" ] \
  || fail "partition 'nope': $(cat "$work/nope.out")"
echo "slurm-check: --slurm-partition nope refused: $(grep -o 'sbatch: error: .*' "$work/nope.out" | head -1)"
jobs_run=$(grep -c "JobState=COMPLETED" "$work/jobcomp.txt" || true)
echo "slurm-check: $jobs_run array tasks COMPLETED (jobcomp)"
