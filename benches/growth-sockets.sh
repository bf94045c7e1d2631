#!/usr/bin/env bash
# Growth curve: idle realtime sockets on one node (issue 17).
#
#   bash benches/growth-sockets.sh                        # 10,000, 50,000, 100,000 sockets
#   PLINTH_BIN=/path/to/release/plinth bash benches/growth-sockets.sh    # no build
#   SOCKETS=1000 WRITES=20 FANOUT_SUBSCRIBERS=100 bash benches/growth-sockets.sh   # smoke
#
# For each count N, on a freshly started server: N subscribed WebSockets that then stay
# idle, then a fan-out measured beside them, both with the realtime bench client
# (benches/ws_fanout.rs, no client of its own here):
#   - The server admits at most 10,000 sockets per tenant (src/realtime/mod.rs, not a
#     setting) and 1,000 per client address, so the N idle sockets are spread over
#     ceil(N / 10,000) tenants, one `ws_fanout --mode idle` process each, and over source
#     addresses 127.0.0.1, .2, ... (`--per-ip` chosen so that all processes together stay
#     under 1,000 per address). One process per 10,000 sockets also keeps each client
#     under its descriptor limit.
#   - Once the server holds N more sockets (counted in /proc/PID/fd) and SETTLE_SECS later:
#     RSS growth per socket, descriptors.
#   - Then, with the N sockets still open, `ws_fanout --mode latency` on another tenant:
#     FANOUT_SUBSCRIBERS subscribers, WRITES writes one at a time: delivery p50/p99/max,
#     fan-out span, the writer's answer time, missing deliveries.
#   - The idle clients are then stopped (their own output is not used).
# A count needs N + FANOUT_SUBSCRIBERS + 1,000 descriptors in the server: the driver raises
# the soft limit to the hard one (`ulimit -Hn`) and records a count that does not fit as
# skipped (raise the hard limit: limits.conf, systemd LimitNOFILE, or a root shell with
# CAP_SYS_RESOURCE). Also check net.ipv4.ip_local_port_range (printed): each source address
# has its own ports, so it only matters past ~28,000 sockets per address.
# Server on SERVER_CPUS (0), clients on CLIENT_CPUS (1), taskset; loopback only.
# Results: $OUT_DIR/growth-sockets-<date>.jsonl, then benches/growth-plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
SOCKETS=${SOCKETS:-"10000 50000 100000"}
PER_TENANT=${PER_TENANT:-10000} # the server's cap per tenant (lower: to try the spread at a small scale)
PER_IP_CAP=1000  # the server's cap per client address
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
WRITES=${WRITES:-100}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-300}
SETTLE_SECS=${SETTLE_SECS:-5}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
OUT_DIR=${OUT_DIR:-benches/results}
PLOT_DIR=${PLOT_DIR:-docs/growth}
PORT=18731
P=http://127.0.0.1:$PORT

resolve_bins
raise_fd_limit
hard=$(ulimit -Hn)
echo "ephemeral ports: $(cat /proc/sys/net/ipv4/ip_local_port_range)" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-growth-sockets.XXXXXX")
results=$work/results.jsonl
: > "$results"
SERVER_PID=
CLIENT_PIDS=()
cleanup() {
  for pid in "${CLIENT_PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$SERVER_PID"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'on_error $LINENO' ERR
cores=$(describe_cores "plinth=$SERVER_CPUS" "clients=$CLIENT_CPUS")
echo "cores: $cores" >&2
COMMON=$(python3 -c "import json,sys; print(json.dumps(dict(bench='growth-sockets', commit=sys.argv[1],
  cores=sys.argv[2], host_cpus=$(nproc), fd_hard_limit=$hard))[1:-1])" "$(bench_commit)" "$cores")

emit() { # JSON fields (without braces)
  echo "{$COMMON,$1}" | python3 -c "import sys,json; print(json.dumps(json.loads(sys.stdin.read())))" \
    | tee -a "$results" >&2
}

cli() { "$PLINTH_BIN" --data-dir "$work/data" "$@" 2>> "$work/cli.err"; }

# ---------------------------------------------------------------- tenants, before any server
max=0
for n in $SOCKETS; do (( n > max )) && max=$n; done
tenants=$(( (max + PER_TENANT - 1) / PER_TENANT ))
cat > "$work/rules.toml" <<'TOML'
[feed]
read   = "auth != null"
create = "auth != null"
update = "auth != null"
TOML
declare -A KEYS
for slug in fan $(seq -f 'i%02g' 0 $((tenants - 1))); do
  cli tenant create "$slug" >/dev/null
  cli rules deploy "$work/rules.toml" --tenant "$slug" >/dev/null
  KEYS[$slug]=$(cli key create --tenant "$slug" --name bench | tail -1)
  [[ ${KEYS[$slug]} == plk_* ]] || { echo "no service key for $slug: $(tail -5 "$work/cli.err")" >&2; exit 1; }
done

start_server() {
  PLINTH_LOG=warn taskset -c "$SERVER_CPUS" "$PLINTH_BIN" --data-dir "$work/data" serve --listen 127.0.0.1:$PORT \
    >> "$work/server.out" 2>> "$work/server.err" &
  SERVER_PID=$!
  wait_http "$P/healthz"
}

ws() { # tenant mode args... (server pid from $SERVER_PID)
  local tenant=$1 mode=$2; shift 2
  taskset -c "$CLIENT_CPUS" "$WS_BIN" --addr 127.0.0.1:$PORT --tenant "$tenant" --token "${KEYS[$tenant]}" \
    --collection feed --mode "$mode" --pid "$SERVER_PID" "$@"
}

# ---------------------------------------------------------------- the curve
for n in $SOCKETS; do
  k=$(( (n + PER_TENANT - 1) / PER_TENANT ))
  per_ip=$(( (PER_IP_CAP * 95 / 100) / (k + 1) ))
  scale="\"sockets\":$n,\"tenants\":$k,\"per_ip\":$per_ip,\"fanout_subscribers\":$FANOUT_SUBSCRIBERS"
  need=$(( n + FANOUT_SUBSCRIBERS + 1000 ))
  if (( need > hard )); then
    echo "== $n sockets: SKIPPED, the server needs ~$need descriptors and the hard limit is $hard" >&2
    emit "$scale,\"skipped\":\"descriptor limit: needs ~$need, hard limit $hard\""
    continue
  fi
  if (( per_ip * 250 < PER_TENANT )); then
    emit "$scale,\"skipped\":\"too many processes to stay under $PER_IP_CAP sockets per address over 250 addresses\""
    continue
  fi
  echo "== $n idle sockets over $k tenant(s), $per_ip per address per process" >&2
  start_server
  # Code and buffers every socket needs are loaded before the baseline.
  ws fan latency --subscribers 50 --writes 10 --per-ip "$per_ip" > /dev/null 2>> "$work/ws.err"
  sleep 2
  rss_before=$(rss_kib "$SERVER_PID")
  sockets_before=$(socket_count "$SERVER_PID")
  fds_before=$(fd_count "$SERVER_PID")
  t0=$SECONDS
  CLIENT_PIDS=()
  for j in $(seq 0 $((k - 1))); do
    m=$(( n - j * PER_TENANT )); (( m > PER_TENANT )) && m=$PER_TENANT
    # Held far longer than the measurement takes: stopped by the driver once it is done.
    # Not through ws(): a backgrounded function is a subshell, and its PID is not the client's.
    slug=$(printf 'i%02d' "$j")
    taskset -c "$CLIENT_CPUS" "$WS_BIN" --addr 127.0.0.1:$PORT --tenant "$slug" --token "${KEYS[$slug]}" \
      --collection feed --mode idle --pid "$SERVER_PID" --subscribers "$m" --warmup 0 --per-ip "$per_ip" \
      --hold-secs $((CONNECT_TIMEOUT + 900)) --connect-timeout-secs "$CONNECT_TIMEOUT" \
      > "$work/idle-$j.json" 2> "$work/idle-$j.err" &
    CLIENT_PIDS+=($!)
  done
  # Until all are open, the clients are gone, CONNECT_TIMEOUT, or 30 s without a new socket
  # (refused ones are only reported by the clients at their end).
  last=0 grown=$SECONDS
  while now=$(( $(socket_count "$SERVER_PID") - sockets_before )); (( now < n && SECONDS - t0 < CONNECT_TIMEOUT && SECONDS - grown < 30 )); do
    (( now > last )) && { last=$now; grown=$SECONDS; }
    alive=0
    for pid in "${CLIENT_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 1
  done
  connect_s=$((SECONDS - t0))
  sleep "$SETTLE_SECS"
  rss_after=$(rss_kib "$SERVER_PID")
  open=$(( $(socket_count "$SERVER_PID") - sockets_before ))
  fds_after=$(fd_count "$SERVER_PID")
  client_rss=0
  for pid in "${CLIENT_PIDS[@]}"; do client_rss=$(( client_rss + $(rss_kib "$pid" 2>/dev/null || echo 0) )); done
  echo "  $open sockets open after ${connect_s} s; server RSS $rss_before -> $rss_after KiB" >&2
  fan=$(ws fan latency --subscribers "$FANOUT_SUBSCRIBERS" --writes "$WRITES" --per-ip "$per_ip" 2>> "$work/ws.err")
  open_after_fanout=$(( $(socket_count "$SERVER_PID") - sockets_before ))
  for pid in "${CLIENT_PIDS[@]}"; do stop_pid "$pid"; done
  CLIENT_PIDS=()
  errors=$(cat "$work"/idle-*.err | sort | uniq -c | sort -rn | head -5 | python3 -c "import sys,json; print(json.dumps(sys.stdin.read().strip()))")
  emit "$scale,\"sockets_open\":$open,\"sockets_open_after_fanout\":$open_after_fanout,\"connect_s\":$connect_s,
    \"rss_before_kib\":$rss_before,\"rss_after_kib\":$rss_after,
    \"bytes_per_socket\":$(( open > 0 ? (rss_after - rss_before) * 1024 / open : 0 )),
    \"fds_before\":$fds_before,\"fds_after\":$fds_after,\"client_rss_kib\":$client_rss,\"idle_client_stderr\":$errors,
    \"fanout\":$fan"
  stop_pid "$SERVER_PID"; SERVER_PID=
  rm -f "$work"/idle-*
  sleep 2 # sockets of this count leave TIME_WAIT-heavy ports behind; let the kernel settle
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$OUT_DIR"
cp "$results" "$OUT_DIR/growth-sockets-$stamp.jsonl"
echo "results: $OUT_DIR/growth-sockets-$stamp.jsonl" >&2
python3 benches/growth-plot.py --out "$PLOT_DIR" "$OUT_DIR/growth-sockets-$stamp.jsonl"
