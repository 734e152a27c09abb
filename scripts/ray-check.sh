#!/usr/bin/env bash
# The Ray executor against a real Ray: creates a venv under .ci/cache/ray (git-ignored) and
# installs "ray[default]" from PyPI into it (once; later runs reuse it), starts a one-node Ray
# head on 127.0.0.1 (`ray start --head --block`, a small object store, its own temporary
# directory and ports, usage stats off), runs the same 4-trial training search locally and
# through Ray, checks that the trial records are identical (timing aside), interrupts a search
# through Ray and checks that the head shows its jobs stopped, prints the wall times, and stops
# the head (by the pid of the `ray start --block` it started, which stops its Ray processes;
# also on failure or Ctrl-C; the head also stops by itself after RAY_CHECK_LIFETIME seconds,
# 600 by default). Never `ray stop`, which would stop every Ray on the machine. Prints SKIPPED
# and why when python3, pip or Ray cannot run here.
#
# Usage: scripts/ray-check.sh              (builds target/release/nas when missing;
#                                          NAS_BIN=PATH runs another nas binary)
# Env:   NAS_RAY_POLL_MS (default here 500: how often the executor asks the head),
#        RAY_CHECK_KEEP=1 keeps the work directory (logs, both searches, Ray's session).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
skip() { echo "SKIPPED: ray-check: $*"; exit 0; }
fail() { echo "FAILED: ray-check: $*"; exit 1; }
t_start=$(date +%s.%N)

cache=$root/.ci/cache/ray
venv=$cache/venv
mkdir -p "$cache"
if ! "$venv/bin/python" -c "import ray" >/dev/null 2>&1; then
  command -v python3 >/dev/null || skip "no python3 on PATH"
  rm -rf "$venv"
  python3 -m venv "$venv" > "$cache/venv.log" 2>&1 \
    || skip "python3 -m venv failed (python3-venv missing?): $(tail -1 "$cache/venv.log")"
  echo "ray-check: installing ray[default] from PyPI into $venv"
  t0=$(date +%s)
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]" > "$cache/pip.log" 2>&1 \
    || skip "pip install \"ray[default]\" failed (no network or no index?); see $cache/pip.log"
  echo "ray-check: installed in $(($(date +%s) - t0)) s"
  "$venv/bin/python" -c "import ray" >/dev/null 2>&1 || skip "ray was installed but does not import"
fi
export PATH="$venv/bin:$PATH"
nas=${NAS_BIN:-$root/target/release/nas}
[ -x "$nas" ] || cargo build --release -p nas-cli

work=$(mktemp -d /tmp/ray-check.XXXXXX)
head_pid=
cleanup() {
  set +e
  if [ -n "$head_pid" ]; then
    kill "$head_pid" 2>/dev/null
    for _ in $(seq 150); do kill -0 "$head_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$head_pid" 2>/dev/null && kill -9 "$head_pid" 2>/dev/null
  fi
  # Any process left from this head's session (found by its own temporary directory).
  for p in $(pgrep -f "$work/ray" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  if [ "${RAY_CHECK_KEEP:-0}" = 1 ]; then echo "ray-check: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

life=${RAY_CHECK_LIFETIME:-600}
# Ports chosen from the pid so that two checks on one machine do not collide.
# (Ray's worker ports stay in its default 10002-19999.)
base=$((20000 + ($$ % 10000) * 2))
gcs=$base dash=$((base + 1))
t0=$(date +%s.%N)
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: a single-machine Ray, whose node address stays
# 127.0.0.1 (otherwise `ray start` swaps 127.0.0.1 for the machine's address and its servers
# listen on every interface); no usage statistics; no 30 s drain when the head is stopped;
# its two metrics ports (fixed by default) moved next to the others.
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 \
  AUTOSCALER_METRIC_PORT=$((base + 20003)) DASHBOARD_METRIC_PORT=$((base + 20004)) \
  timeout -k 10 "$life" ray start --head --block \
  --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 --port "$gcs" --dashboard-port "$dash" \
  --ray-client-server-port $((base + 20001)) --dashboard-agent-listen-port $((base + 20002)) \
  --num-cpus "$(nproc)" --object-store-memory 100000000 --temp-dir "$work/ray" \
  --disable-usage-stats > "$work/head.out" 2>&1 &
head_pid=$!
addr=http://127.0.0.1:$dash
up=
for _ in $(seq 300); do
  kill -0 "$head_pid" 2>/dev/null || break
  if python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/api/version', timeout=2)" "$addr" 2>/dev/null; then
    up=1; break
  fi
  sleep 0.2
done
[ -n "$up" ] || skip "the Ray head did not come up: $(tail -3 "$work/head.out" | tr '\n' ' ')"
t1=$(date +%s.%N)
# What this head listens on: the sockets of the processes of its session.
listening=
for p in $(pgrep -f "$work/ray" 2>/dev/null || true); do
  listening+=$(ss -ltnpH 2>/dev/null | grep "pid=$p," | awk -v n="$(cat /proc/$p/comm 2>/dev/null)" '{print n "@" $4}' | tr '\n' ' ' || true)
done
echo "ray-check: Ray $(python -c 'import ray; print(ray.__version__)') head up in $(python -c "print(f'{$t1 - $t0:.1f}')") s at $addr"
echo "ray-check: its sockets: ${listening:-?}"
wide=$(echo "$listening" | tr ' ' '\n' | grep -vE '@(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):' | tr '\n' ' ' || true)
if command -v ss >/dev/null; then
  [ -z "${wide// /}" ] || fail "the Ray head listens beyond loopback: $wide"
  [ -n "${listening// /}" ] || fail "no socket of the Ray head found (ss -ltnp)"
else
  echo "ray-check: no ss on PATH: the head's sockets were not checked"
fi

export NAS_RAY_POLL_MS=${NAS_RAY_POLL_MS:-500}
args=(--json search --data digits --strategy random -n 4 --epochs 1 --limit-train 500
      --channels 4 --workers 2 --seed 5)
t0=$(date +%s.%N)
"$nas" "${args[@]}" --out "$work/local" > "$work/local.json"
t1=$(date +%s.%N)
timeout 300 "$nas" "${args[@]}" --executor ray --ray-address "$addr" --out "$work/ray-search" \
  > "$work/ray.json" 2> "$work/ray.err" \
  || fail "the search through Ray failed (exit $?): $(tail -5 "$work/ray.err")"
t2=$(date +%s.%N)
python - "$work/local.json" "$work/ray.json" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
t0, t1, t2 = map(float, sys.argv[3:6])
strip = lambda r: [{k: v for k, v in t.items() if k != "wall_time_s"} for t in r["trials"]]
if strip(a) != strip(b) or len(strip(a)) != 4:
    print("FAILED: ray-check: the trial records differ between local and Ray")
    print(json.dumps(strip(a), indent=1), json.dumps(strip(b), indent=1))
    sys.exit(1)
local, ray = t1 - t0, t2 - t1
print(f"ray-check: OK: 4 trials, records identical (timing aside); "
      f"local {local:.2f} s, ray {ray:.2f} s, difference per trial {(ray - local) / 4:.2f} s")
EOF

# What the head saw: one job per trial, all SUCCEEDED, each with its log on the shared path.
# (A job may still be RUNNING a moment after its result was taken: its driver is exiting.)
python - "$addr" "$work/ray-search" <<'EOF'
import json, sys, time, urllib.request, glob
addr, out = sys.argv[1:3]
for _ in range(150):
    jobs = json.load(urllib.request.urlopen(addr + "/api/jobs/", timeout=10))
    ours = [j for j in jobs if (j.get("metadata") or {}).get("nas_search") == out]
    states = sorted(j["status"] for j in ours)
    if "RUNNING" not in states and "PENDING" not in states:
        break
    time.sleep(0.2)
logs = glob.glob(out + "/trials/*/nas-*.log")
if states != ["SUCCEEDED"] * 4 or len(logs) != 4:
    print(f"FAILED: ray-check: the head shows {states} for the search's jobs, {len(logs)} logs")
    sys.exit(1)
print(f"ray-check: the head ran 4 jobs, all SUCCEEDED; trial logs: {len(logs)}")
EOF

# Ctrl-C: the jobs in flight are stopped. Trials that train long enough to be interrupted.
slow=(--json search --data digits --strategy random -n 2 --epochs 30 --limit-train 1500
      --channels 8 --workers 2 --seed 6)
"$nas" "${slow[@]}" --executor ray --ray-address "$addr" --out "$work/int" \
  > "$work/int.out" 2> "$work/int.err" &
pid=$!
tickets=0
for _ in $(seq 600); do
  tickets=$(grep -o '"ticket":' "$work/int/checkpoint.journal" 2>/dev/null | wc -l || true)
  [ "$tickets" -ge 2 ] && break
  sleep 0.1
done
[ "$tickets" -ge 2 ] || fail "the interrupted search recorded no tickets: $(tail -3 "$work/int.err")"
sleep 2
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 130 ] || fail "the interrupted search exited $rc, not 130: $(tail -3 "$work/int.err")"
python - "$addr" "$work/int" <<'EOF'
import json, sys, time, urllib.request
addr, out = sys.argv[1:3]
for _ in range(100):
    jobs = json.load(urllib.request.urlopen(addr + "/api/jobs/", timeout=10))
    states = sorted(j["status"] for j in jobs if (j.get("metadata") or {}).get("nas_search") == out)
    if states == ["STOPPED"] * 2:
        break
    time.sleep(0.2)
else:
    print(f"FAILED: ray-check: after Ctrl-C the head shows {states} for the search's jobs")
    sys.exit(1)
print("ray-check: Ctrl-C: exit 130, the head shows both jobs STOPPED")
EOF
t_end=$(date +%s.%N)
echo "ray-check: done in $(python -c "print(f'{$t_end - $t_start:.1f}')") s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
