#!/bin/bash
# One node, sled against PostgreSQL: passes/s of `blindpass bench issue`
# against a real `serve`, in the order sled, postgres, postgres, sled, each
# on a fresh data directory (and a fresh database), the same client; and the
# CPU seconds of every PostgreSQL process, read from /proc around each run.
#
# Run as root from the repository (PostgreSQL's server binaries installed,
# as `.ci/run` installs them; the cluster runs as the `postgres` user):
#   cargo build --release && bash docs/store-bench.sh
# Prints one JSON line a run. The cluster keeps PostgreSQL's defaults
# (fsync and synchronous_commit on), on a Unix socket in /tmp/benchpg.
set -eu
B=${B:-target/release/blindpass}
D=/tmp/storebench
PG=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
SOCK=/tmp/benchpg
rm -rf $SOCK && mkdir $SOCK && chown postgres: $SOCK
runuser -u postgres -- $PG/initdb -D $SOCK/data -A trust -U postgres -E UTF8 --locale=C \
  --no-instructions >/dev/null
runuser -u postgres -- $PG/pg_ctl -D $SOCK/data -l $SOCK/server.log -w \
  -o "-k $SOCK -p 5499 -c listen_addresses='' -c max_connections=100" start >/dev/null
trap 'runuser -u postgres -- $PG/pg_ctl -D $SOCK/data -m fast stop >/dev/null' EXIT

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

run() { # $1 = sled | postgres, $2 = run number
  rm -rf $D && mkdir -p $D
  local store=sled
  if [ "$1" = postgres ]; then
    runuser -u postgres -- $PG/dropdb -h $SOCK -p 5499 --if-exists bench
    runuser -u postgres -- $PG/createdb -h $SOCK -p 5499 bench
    store="host=$SOCK port=5499 user=postgres dbname=bench"
  fi
  BLINDPASS_PASSPHRASE="bench passphrase" BLINDPASS_STORE="$store" $B serve --data-dir $D/data \
    --listen 127.0.0.1:18391 --rate-burst 100000 --rate-per-s 100000 >$D/serve.log 2>&1 &
  local server=$!
  until curl -sf http://127.0.0.1:18391/readyz >/dev/null; do sleep 0.2; done
  local p0; p0=$(cpu_of $(pgrep -u postgres -d' ' postgres))
  $B bench issue --server http://127.0.0.1:18391 --admin-token-file $D/data/admin.token \
    --duration-s 15 --warmup-s 2 --openssl-seconds 0 --calibrate-s 1 --quiet --json >$D/issue.json
  local p1; p1=$(cpu_of $(pgrep -u postgres -d' ' postgres))
  kill -INT $server && wait $server
  python3 - "$1" "$2" $D/issue.json $((p1 - p0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
store, run, path, ticks, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
r = json.load(open(path))
f = {x["what"]: x["value"] for x in r["figures"]}
lat = {x["phase"]: x["latency"] for x in r["latencies"]}["issue"]
rate = f["passes/s"]
# The CPU window holds the setup (a few hundred rows), the 2 s warm-up and
# the 15 s timed phase: per pass, over the passes of warm-up and timed phase
# at the timed rate.
print(json.dumps({"store": store, "run": run, "passes_per_s": round(rate, 1),
    "p99_ms": lat["p99_ms"], "raw_sign_per_s": round(f["raw blind_sign openssl, 2 threads, before"]),
    "postgres_cpu_s": ticks / hz, "postgres_cpu_ms_per_pass": round(1000 * ticks / hz / (rate * 17), 3)}))
PY
}

for x in "sled 1" "postgres 1" "postgres 2" "sled 2"; do run $x; done
