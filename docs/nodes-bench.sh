#!/bin/bash
# One node against two nodes sharing one PostgreSQL database and one SoftHSM2
# PKCS#11 token: passes/s of `blindpass bench issue` against real `serve`
# processes, in one invocation, so that the figures compare within one run:
#
#   1. sled, one node (passphrase)           4. shared, two nodes (token)
#   2. postgres, one node (passphrase)       5. shared, one node again
#   3. shared, one node (token)              6. sled again (drift shows)
#
# "shared" is `serve --store <conninfo> --master pkcs11:token=…` (docs/deployment.md,
# "Several nodes (as built)"); every postgres or shared run starts on a fresh
# database and (shared) a fresh token directory, every run on fresh data
# directories. For two nodes the second node starts once the first answers
# /readyz, then two `bench issue` clients run at the same time, one against
# each node with that node's admin token (node 1 opens the period first, see
# run()); the run reports the sum of their
# passes/s and the larger of their p99s. The clients' progress lines on stderr
# are timestamped, which gives each client's timed phase on one clock: the
# line's `timed_overlap_s` is how long the two timed phases ran together
# (15 s if they were aligned). Around each run the CPU ticks of the cluster's
# processes (postmaster and its children) and of the serve process(es) are read
# from /proc, as docs/store-bench.sh does; per pass over warm-up and timed phase.
#
# Run as root from the repository (PostgreSQL's server binaries and SoftHSM2
# installed, as `.ci/run` installs them; the cluster runs as the `postgres`
# user on a Unix socket in /tmp/nodesbenchpg, port 5498, with PostgreSQL's
# defaults: fsync and synchronous_commit on):
#   cargo build --release && bash docs/nodes-bench.sh
# It builds nothing and uses target/release/blindpass (or $B). STAGGER_S=n
# starts the second client of the two-node run n seconds after the first
# (0 by default); REQUESTS=n sets the requests each of the two clients prepares
# (40,000 by default). Prints one JSON line a run. Everything (PostgreSQL, the
# nodes, the load generators) shares the machine's cores: on a 2-core machine
# two nodes cannot add capacity; the two-node figure shows what sharing the
# database, the token and the ring costs or does not cost, not scaling.
set -eu
B=${B:-target/release/blindpass}
STAGGER_S=${STAGGER_S:-0}
D=/tmp/nodesbench
PG=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
SOCK=/tmp/nodesbenchpg
PORT=5498
MODULE=/usr/lib/softhsm/libsofthsm2.so
LABEL=nodesbench
CONNINFO="host=$SOCK port=$PORT user=postgres dbname=bench"
HZ=$(getconf CLK_TCK)
SERVERS=()

[ -x "$B" ] || { echo "$B is missing: cargo build --release first" >&2; exit 1; }
[ -e $MODULE ] || { echo "$MODULE is missing (Debian package softhsm2)" >&2; exit 1; }

rm -rf $SOCK && mkdir $SOCK && chown postgres: $SOCK
runuser -u postgres -- $PG/initdb -D $SOCK/data -A trust -U postgres -E UTF8 --locale=C \
  --no-instructions >/dev/null
runuser -u postgres -- $PG/pg_ctl -D $SOCK/data -l $SOCK/server.log -w \
  -o "-k $SOCK -p $PORT -c listen_addresses='' -c max_connections=100" start >/dev/null
stop_all() {
  for p in "${SERVERS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null || true; done
  runuser -u postgres -- $PG/pg_ctl -D $SOCK/data -m fast stop >/dev/null
}
trap stop_all EXIT

cpu_of() { # utime + stime of the given pids, in clock ticks
  local t=0
  for p in "$@"; do
    if [ -r /proc/$p/stat ]; then
      set -- $(sed 's/^.*) //' /proc/$p/stat)
      t=$((t + ${12} + ${13}))
    fi
  done
  echo "$t"
}
pg_cpu() { # this cluster's processes only (another cluster may run as postgres too)
  local pm; pm=$(head -1 $SOCK/data/postmaster.pid)
  cpu_of $pm $(pgrep -P $pm -d' ')
}

fresh_db() {
  runuser -u postgres -- $PG/dropdb -h $SOCK -p $PORT --if-exists bench
  runuser -u postgres -- $PG/createdb -h $SOCK -p $PORT bench
}

fresh_token() { # a SoftHSM2 token directory of its own, as tests/common/softhsm.rs makes
  rm -rf $D/token && mkdir -p $D/token/tokens
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    $D/token/tokens >$D/token/softhsm2.conf
  echo 1234 >$D/token/pin
  SOFTHSM2_CONF=$D/token/softhsm2.conf softhsm2-util --init-token --free --label $LABEL \
    --pin 1234 --so-pin 12345678 >/dev/null
}

start_node() { # $1 = sled | postgres | shared, $2 = node number; appends to SERVERS
  local dir=$D/node$2 port=$((18400 + $2))
  mkdir -p $dir
  case $1 in
    sled) BLINDPASS_PASSPHRASE="bench passphrase" BLINDPASS_STORE=sled $B serve \
        --data-dir $dir/data --listen 127.0.0.1:$port --rate-burst 100000 --rate-per-s 100000 \
        >$dir/serve.log 2>&1 & ;;
    postgres) BLINDPASS_PASSPHRASE="bench passphrase" BLINDPASS_STORE="$CONNINFO" $B serve \
        --data-dir $dir/data --listen 127.0.0.1:$port --rate-burst 100000 --rate-per-s 100000 \
        >$dir/serve.log 2>&1 & ;;
    shared) env -u BLINDPASS_PASSPHRASE -u BLINDPASS_PKCS11_PIN \
        SOFTHSM2_CONF=$D/token/softhsm2.conf BLINDPASS_STORE="$CONNINFO" $B serve \
        --data-dir $dir/data --listen 127.0.0.1:$port --rate-burst 100000 --rate-per-s 100000 \
        --master "pkcs11:token=$LABEL?module-path=$MODULE&pin-source=$D/token/pin" \
        >$dir/serve.log 2>&1 & ;;
  esac
  local pid=$!
  SERVERS+=("$pid")
  local t=0
  until curl -sf http://127.0.0.1:$port/readyz >/dev/null; do
    if ! kill -0 $pid 2>/dev/null || [ $t -ge 600 ]; then
      echo "node $2 ($1) did not become ready:" >&2; tail -20 $dir/serve.log >&2; exit 1
    fi
    sleep 0.2; t=$((t + 1))
  done
}

stamp() { # each stderr line with the wall clock in front
  while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done
}

client() { # $1 = node number, [$2 = --requests N]: bench issue against it, in the background
  local dir=$D/node$1 more=${2:-}
  ( $B bench issue --server http://127.0.0.1:$((18400 + $1)) \
      --admin-token-file $dir/data/admin.token --duration-s 15 --warmup-s 2 \
      --openssl-seconds 0 --calibrate-s 1 $more --json 2>&1 >$dir/issue.json | stamp >$dir/issue.err
    exit "${PIPESTATUS[0]}" ) &
}

run() { # $1 = sled | postgres | shared, $2 = nodes (1 | 2), $3 = run number
  rm -rf $D && mkdir -p $D
  SERVERS=()
  [ "$1" = sled ] || fresh_db
  [ "$1" != shared ] || fresh_token
  local n
  for n in $(seq 1 $2); do start_node $1 $n; done
  local p0 s0; p0=$(pg_cpu); s0=$(cpu_of "${SERVERS[@]}")
  local clients=() more=
  if [ $2 -gt 1 ]; then
    # Two concurrent setups race in `bench issue`'s "open a period unless one
    # is open" (GET, then POST): the first run of this script got two live
    # periods named "bench". So node 1 opens the period first, with the body
    # bench's setup sends, and both clients find it. And each client prepares
    # the same number of requests (by default it prepares as many as its own
    # calibration says, and the two calibrations, run together, differ): their
    # blinding then ends together, and so their timed phases start together.
    local ends; ends=$(date -u -d '+14 days' +%Y-%m-%dT%H:%M:%SZ)
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
      -H "Authorization: Bearer $(cat $D/node1/data/admin.token)" \
      -d "{\"name\":\"bench\",\"ends_at\":\"$ends\",\"grace_s\":0}" \
      http://127.0.0.1:18401/v1/admin/periods
    # Node 2 learns of it from the ring's notification: wait until it lists
    # it, or its client would open a second one.
    until curl -sf -H "Authorization: Bearer $(cat $D/node2/data/admin.token)" \
        http://127.0.0.1:18402/v1/admin/periods | grep -q '"live":\[{'; do sleep 0.05; done
    more="--requests ${REQUESTS:-40000}"
  fi
  for n in $(seq 1 $2); do
    [ $n -eq 1 ] || [ "$STAGGER_S" = 0 ] || sleep "$STAGGER_S"
    client $n "$more"; clients+=("$!")
  done
  local failed=0
  for c in "${clients[@]}"; do wait "$c" || failed=1; done
  local p1 s1; p1=$(pg_cpu); s1=$(cpu_of "${SERVERS[@]}")
  curl -sf -H "Authorization: Bearer $(cat $D/node1/data/admin.token)" \
    http://127.0.0.1:18401/v1/admin/periods >$D/periods.json || echo '{}' >$D/periods.json
  for p in "${SERVERS[@]}"; do kill -INT "$p"; done
  for p in "${SERVERS[@]}"; do wait "$p" || true; done
  SERVERS=()
  if [ $failed = 1 ]; then
    for n in $(seq 1 $2); do
      echo "client $n of $1/$2 nodes:" >&2; tail -20 $D/node$n/issue.err >&2
      tail -20 $D/node$n/serve.log >&2
    done
    exit 1
  fi
  python3 - "$1" "$2" "$3" $((p1 - p0)) $((s1 - s0)) "$HZ" $D <<'PY'
import json, re, sys
store, nodes, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pg_ticks, serve_ticks, hz, d = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
rates, p99s, raws, windows, failed, notes = [], [], [], [], 0, []
for n in range(1, nodes + 1):
    r = json.load(open(f"{d}/node{n}/issue.json"))
    f = {x["what"]: x["value"] for x in r["figures"]}
    lat = {x["phase"]: x["latency"] for x in r["latencies"]}["issue"]
    rates.append(f["passes/s"])
    p99s.append(lat["p99_ms"])
    raws.append(f["raw blind_sign openssl, 2 threads, before"])
    for phase, tally in r["errors"]:
        if phase == "issue":
            failed += sum(tally.values())
    notes += [x for x in r["notes"] if "ran out" in x]
    # The first progress line of the issue phase gives its start on the wall
    # clock: the line's time less the seconds it shows.
    for line in open(f"{d}/node{n}/issue.err"):
        m = re.match(r"^(\d+\.\d+) issue:\s+([\d.]+) s", line)
        if m:
            start = float(m.group(1)) - float(m.group(2)) + 2.0  # after the warm-up
            windows.append((start, start + f["timed phase"]))
            break
rate = sum(rates)
periods = json.load(open(f"{d}/periods.json")).get("live")
out = {"store": store, "nodes": nodes, "run": run, "passes_per_s": round(rate, 1),
    "p99_ms": max(p99s), "raw_sign_per_s": round(sum(raws) / len(raws)),
    "postgres_cpu_ms_per_pass": round(1000 * pg_ticks / hz / (rate * 17), 3),
    # The CPU windows hold the clients' setup, the 2 s warm-up and the 15 s
    # timed phase: per pass, over warm-up and timed passes at the timed rate.
    "postgres_cpu_s": pg_ticks / hz, "serve_cpu_ms_per_pass": round(1000 * serve_ticks / hz / (rate * 17), 3),
    "failed_issue_requests": failed, "live_periods": None if periods is None else len(periods)}
if nodes > 1:
    out["passes_per_s_each"] = [round(x, 1) for x in rates]
    out["p99_ms_each"] = p99s
    out["raw_sign_per_s_each"] = [round(x) for x in raws]
    if len(windows) == nodes:
        out["timed_overlap_s"] = round(min(w[1] for w in windows) - max(w[0] for w in windows), 2)
        out["timed_start_offset_s"] = round(max(w[0] for w in windows) - min(w[0] for w in windows), 2)
if notes:
    out["notes"] = notes
print(json.dumps(out), flush=True)
PY
}

for x in "sled 1 1" "postgres 1 1" "shared 1 1" "shared 2 1" "shared 1 2" "sled 1 2"; do run $x; done
