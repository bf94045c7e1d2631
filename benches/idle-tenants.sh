#!/usr/bin/env bash
# What an idle tenant costs a node (issue 17): N tenants, each served once, then left to
# the idle close; the server's memory at each step. The figures behind the idle policy
# (docs/deploy.md, "Memory"); growth-tenants.sh draws the curve up to 10,000.
#
#   PLINTH_BIN=target/debug/plinth bash benches/idle-tenants.sh          # N=300
#   N=500 ROUNDS=3 PLINTH_BIN=... bash benches/idle-tenants.sh
#   MALLOC_CONF=background_thread:false PLINTH_BIN=... bash benches/idle-tenants.sh
#
# Settings in the environment pass through to the server (PLINTH_*, MALLOC_CONF), so the
# same run with one part disabled tells what that part costs. A debug build gives
# relative figures (what a change saves), not the release build's absolute ones.
#
# Tenants are copies of one template (DOCS_PER_TENANT documents, a user, rules, a service
# key; lib.sh `tenant_template`, `seed_tenants`). Then, on one server
# (PLINTH_SQLITE_IDLE=IDLE_SECS, hooks off), one JSON line per step:
#   started    SETTLE_SECS after the start, no tenant served yet
#   touched    right after one get by id in every tenant, twice in a row (the first
#              request each gets, p50/p99 in the row: after a start, the file's first
#              open; the second, warm: the difference is what opening costs)
#   idle       IDLE_SECS * 3 + DECAY_SECS later: every tenant file closed, freed memory
#              given back (jemalloc's dirty_decay_ms is 10 s)
# and again ROUNDS times (touched2/idle2, ...: a cold tenant's first request after the
# idle close; memory that grows round after round is leaked, memory that does not is
# what the server keeps). Fields: VmRSS, RssAnon, RssFile (KiB), Threads, descriptors,
# tenant files open, the /metrics gauges of per-tenant state. Results on stdout and in
# $OUT (benches/results/idle-tenants-<date>.jsonl); PER_TENANT_FROM=started prints the
# KiB per tenant of each row above that one.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
N=${N:-300}
DOCS_PER_TENANT=${DOCS_PER_TENANT:-20}
IDLE_SECS=${IDLE_SECS:-2}
DECAY_SECS=${DECAY_SECS:-12}
SETTLE_SECS=${SETTLE_SECS:-3}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18731}
OUT_DIR=${OUT_DIR:-benches/results}
[[ -x ${PLINTH_BIN:-} ]] || { echo "set PLINTH_BIN to a plinth binary (debug is fine)" >&2; exit 1; }
H="python3 benches/growth_tenants.py"
P=http://127.0.0.1:$PORT

raise_fd_limit
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-idle-tenants.XXXXXX")
SERVER_PID=
cleanup() { stop_pid "$SERVER_PID"; rm -rf "$work"; }
trap cleanup EXIT
trap 'on_error $LINENO' ERR
: > "$work/slugs.txt"

tenant_template "$DOCS_PER_TENANT" "$PORT"
t0=$(date +%s)
seed_tenants "$work/data" 0 "$N"
seed_s=$(( $(date +%s) - t0 ))
echo "seeded $N tenants in $seed_s s" >&2

PLINTH_SQLITE_IDLE=$IDLE_SECS PLINTH_RUN_HOOKS=false PLINTH_LOG=warn \
  "$PLINTH_BIN" --data-dir "$work/data" serve --listen "127.0.0.1:$PORT" \
  > "$work/server.out" 2> "$work/server.err" &
SERVER_PID=$!
wait_http "$P/healthz" 1200

results=$work/results.jsonl
row() { # step [extra JSON fields, without braces]
  local s
  s=$($H state "$P" "$SERVER_PID")
  echo "{\"bench\":\"idle-tenants\",\"commit\":\"$(bench_commit)\",\"bin\":\"$PLINTH_BIN\",\"tenants\":$N,\"idle_s\":$IDLE_SECS,\"malloc_conf\":\"${MALLOC_CONF:-}\",\"step\":\"$1\"${2:+,$2},${s:1}" \
    | tee -a "$results"
}

sleep "$SETTLE_SECS"
row started "\"seed_s\":$seed_s"
for r in $(seq "$ROUNDS"); do
  suffix=$([[ $r == 1 ]] && echo "" || echo "$r")
  touched=$($H touch "$P" "$KEY" "$work/slugs.txt")
  row "touched$suffix" "${touched:1:-1}"
  sleep $(( IDLE_SECS * 3 + DECAY_SECS ))
  row "idle$suffix"
done
stop_pid "$SERVER_PID"; SERVER_PID=

python3 - "$results" "${PER_TENANT_FROM:-started}" "$N" <<'PY' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = next(r for r in rows if r["step"] == sys.argv[2])
n = int(sys.argv[3])
print(f"{'step':<10} {'RSS MiB':>8} {'anon MiB':>9} {'KiB/tenant (anon)':>18} {'files':>6} {'fds':>5} {'threads':>7} {'first p50/p99 ms':>17} {'again p50/p99 ms':>17}")
for r in rows:
    per = (r["RssAnon"] - base["RssAnon"]) / n
    lat = lambda s: f"{s['p50_us'] / 1000:.2f}/{s['p99_us'] / 1000:.2f}" if s and s["n"] else ""
    print(f"{r['step']:<10} {r['VmRSS'] / 1024:>8.1f} {r['RssAnon'] / 1024:>9.1f} {per:>18.1f} {r['tenant_files_open']:>6} {r['fds']:>5} {r['Threads']:>7} {lat(r.get('first')):>17} {lat(r.get('again')):>17}")
PY
mkdir -p "$OUT_DIR"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
cp "$results" "$OUT_DIR/idle-tenants-$stamp.jsonl"
echo "results: $OUT_DIR/idle-tenants-$stamp.jsonl" >&2
