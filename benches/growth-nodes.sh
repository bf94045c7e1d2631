#!/usr/bin/env bash
# Growth curve: Plinth nodes on one PostgreSQL behind the proxy (issue 17).
#
#   bash benches/growth-nodes.sh                          # 1, 2, 3 nodes
#   PLINTH_BIN=/path/to/release/plinth bash benches/growth-nodes.sh      # no build
#   NODES="1 2" RUNS=1 SECONDS_PER_RUN=3 WRITES=20 FANOUT_SUBSCRIBERS=100 bash benches/growth-nodes.sh
#   TENANTS=16 bash benches/growth-nodes.sh               # creates spread over 16 tenants
#
# The cluster is the one of tests/cluster.rs: a throwaway PostgreSQL (scripts/pg.sh: fsync
# and synchronous_commit off, so the figures are CPU, not this machine's disk), N `plinth
# serve` nodes on it, and Debian's haproxy running docker/haproxy.cfg unchanged (addresses
# from the environment). TENANTS tenants (default 1: `bench`; more: `bench`, `bench-1`
# .. `bench-<TENANTS-1>`), each with the same rules and a service key of its own, are made
# with the CLI against the same database (three CLI processes a tenant). For each N, on
# fresh node and proxy processes:
#   creates  load.rs through the proxy, CONNS connections for SECONDS_PER_RUN s, POST of a
#            new document with the service key, RUNS times: creates/s, p50/p99, and the CPU
#            each role used per create and in % of one core (nodes, PostgreSQL, haproxy,
#            load generator), read from /proc: the role near its cores' 100% is the limit.
#            With TENANTS > 1 the creates are spread over the tenants, each with its own
#            key (load.rs --targets): SPREAD=request (default) sends request n to tenant
#            n mod TENANTS, SPREAD=connection pins connection c to tenant c mod TENANTS.
#            One tenant's writers queue on its `tenant_seq` row across nodes; many tenants,
#            as a multi-tenant deployment has, rarely do (but each commit group holds fewer
#            creates).
#   fanout   ws_fanout.rs through the proxy: FANOUT_SUBSCRIBERS subscribers spread over the
#            nodes by the proxy, WRITES writes one at a time through the proxy (so most
#            deliveries cross nodes through LISTEN/NOTIFY): delivery p50/p99/max, missing.
#            Always in tenant `bench`.
# Every row records `tenants` (and `spread` when TENANTS > 1); benches/growth-plot.py draws
# each tenant count as a series of its own.
# Steady state: before each step's measured runs, WARMUP_SECONDS (default 3, 0 = none) of
# the same creates (over the same tenants), unmeasured, then ANALYZE. A fresh cluster's
# documents table has no statistics until autovacuum's first ANALYZE (a minute or more);
# until then the planner ties the primary key with documents_created (tenant, collection,
# created_at, id) for the commit's batched existence check and may take the latter, which
# walks the tenant's whole collection per key: the first step measured that, not one node
# (issue 17, BENCHMARKS.md).
# PG_STATS=1 records pg_stat_statements' top statements per run next to the results.
# The model of a larger machine (benches/growth-plot.py) takes the per-create CPU of the
# run with the most tenants in the files it is given.
# Cores (taskset): nodes on NODE_CPUS (a list, node i takes item i, cycled; default all on
# core 1), PostgreSQL on PG_CPUS, haproxy on PROXY_CPUS, load generators on CLIENT_CPUS
# (default all three on core 0). The driver prints which roles share a core and puts it in
# every row; benches/growth-plot.py models a larger machine from the per-create CPU costs.
# Needs: haproxy (apt-get install haproxy), PostgreSQL (initdb), python3, curl, taskset.
# Loopback only. Results: $OUT_DIR/growth-nodes-<date>.jsonl, then benches/growth-plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
source scripts/pg.sh
NODES=${NODES:-"1 2 3"}
CONNS=${CONNS:-64}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RUNS=${RUNS:-3}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
WRITES=${WRITES:-100}
NODE_CPUS=${NODE_CPUS:-1}
PG_CPUS=${PG_CPUS:-0}
PROXY_CPUS=${PROXY_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-0}
OUT_DIR=${OUT_DIR:-benches/results}
PG_STATS=${PG_STATS:-0}
PLOT_DIR=${PLOT_DIR:-docs/growth}
TENANTS=${TENANTS:-1}
SPREAD=${SPREAD:-request}
[[ $TENANTS =~ ^[1-9][0-9]*$ ]] || { echo "TENANTS must be a positive integer, not '$TENANTS'" >&2; exit 1; }
[[ $SPREAD == request || $SPREAD == connection ]] || { echo "SPREAD is request or connection, not '$SPREAD'" >&2; exit 1; }
if [[ $SPREAD == connection ]] && (( TENANTS > CONNS )); then
  echo "warning: SPREAD=connection with TENANTS=$TENANTS > CONNS=$CONNS: $((TENANTS - CONNS)) tenants get no creates" >&2
fi
PROXY_PORT=18740
NODE_PORT0=18741
PX=http://127.0.0.1:$PROXY_PORT
read -r -a node_cpus <<< "$NODE_CPUS"

HAPROXY=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null || true)
[[ -x $HAPROXY ]] || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
[[ -n "$(find_pg_bin || true)" ]] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
resolve_bins
raise_fd_limit
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-growth-nodes.XXXXXX")
results=$work/results.jsonl
: > "$results"
NODE_PIDS=()
PROXY_PID=
stop_cluster() {
  stop_pid "$PROXY_PID"; PROXY_PID=
  for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done
  NODE_PIDS=()
}
cleanup() { stop_cluster; pg_stop; rm -rf "$work"; }
trap cleanup EXIT
trap 'on_error $LINENO' ERR

(( PG_STATS )) && export PG_EXTRA_OPTS="${PG_EXTRA_OPTS:-} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
pg_start
PG_PID=$(head -1 "$pg_dir/data/postmaster.pid")
# Backends fork from the postmaster and inherit its cores; the ones already running are
# pinned one by one.
for pid in "$PG_PID" $(pgrep -P "$PG_PID"); do taskset -a -cp "$PG_CPUS" "$pid" >/dev/null; done
pg_cpu_ticks() { # the postmaster and its children (backends of the nodes' pools included)
  local total=0 pid
  for pid in "$PG_PID" $(pgrep -P "$PG_PID"); do total=$(( total + $(cpu_ticks "$pid" 2>/dev/null || echo 0) )); done
  echo "$total"
}
# CPU of this shell's reaped children (the load generator, once it has exited).
children_ticks() { sed 's/^.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }

export PLINTH_DATABASE_URL=$TEST_POSTGRES_URL
psql_q() { "$pg_bin/psql" -X -q -At -d "$TEST_POSTGRES_URL" -c "$1"; }
# PG_STATS=1: PostgreSQL's own time per statement for each creates run (pg_stat_statements,
# reset before the run), the top statements by total time appended to $work/pg-stats.txt
# and copied next to the results.
(( PG_STATS )) && psql_q "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
pg_stats_dump() { # label requests
  (( PG_STATS )) || return 0
  { echo "== $1 ($2 creates): calls | total ms | ms/call | µs per create | rows | shared blks hit | query"
    psql_q "SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / calls)::numeric, 3),
              round((total_exec_time * 1000 / $2)::numeric, 1), rows, shared_blks_hit, left(regexp_replace(query, '\s+', ' ', 'g'), 160)
            FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT ${PG_STATS_TOP:-12}"
  } >> "$work/pg-stats.txt"
}
PLINTH_SECRETS_KEY=$(head -c 32 /dev/urandom | base64)
PLINTH_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export PLINTH_SECRETS_KEY PLINTH_JWT_SECRET
export PLINTH_TRUST_FORWARDED_FOR=true PLINTH_LOG=warn

start_cluster() { # N
  local n=$1 i cpus
  local proxy_env=("PLINTH_PROXY_BIND=127.0.0.1:$PROXY_PORT")
  for i in $(seq 0 $((n - 1))); do
    cpus=${node_cpus[$((i % ${#node_cpus[@]}))]}
    taskset -c "$cpus" "$PLINTH_BIN" --data-dir "$work/node$i" serve --listen 127.0.0.1:$((NODE_PORT0 + i)) \
      >> "$work/node$i.out" 2>> "$work/node$i.err" &
    NODE_PIDS+=($!)
    proxy_env+=("PLINTH_NODE$((i + 1))=127.0.0.1:$((NODE_PORT0 + i))")
  done
  for i in $(seq 0 $((n - 1))); do wait_http "http://127.0.0.1:$((NODE_PORT0 + i))/readyz" 600; done
  env "${proxy_env[@]}" taskset -c "$PROXY_CPUS" "$HAPROXY" -db -f docker/haproxy.cfg >> "$work/haproxy.log" 2>&1 &
  PROXY_PID=$!
  wait_http "$PX/readyz"
  sleep 3 # every node passes its first health check (inter 1s, rise 1)
}

creates() { # seconds: load.rs POSTs of new documents through the proxy, its JSON line
  local target=(--path /v1/t/bench/collections/notes/docs --header "authorization: Bearer $KEY")
  if (( TENANTS > 1 )); then target=(--targets "$work/targets.tsv" --targets-by "$SPREAD"); fi
  taskset -c "$CLIENT_CPUS" "$LOAD_BIN" --addr 127.0.0.1:$PROXY_PORT --connections "$CONNS" \
    --seconds "$1" --label creates --method POST "${target[@]}" --header 'content-type: application/json' \
    --body '{"title":"note {n}","n":{n}}' --expect 201
}
layout_args=("postgres=$PG_CPUS" "haproxy=$PROXY_CPUS" "load generators=$CLIENT_CPUS")
cli() { "$PLINTH_BIN" "$@" 2>> "$work/cli.err"; }
# make_tenants: the TENANTS tenants, each with $work/rules.toml and a service key; sets KEY
# (the key of `bench`, the fan-out's tenant) and writes $work/targets.tsv (load.rs
# --targets: the tenant's create path, a tab, its authorization header).
make_tenants() {
  local i slug key started=$SECONDS
  : > "$work/targets.tsv"
  for i in $(seq 0 $((TENANTS - 1))); do
    slug=bench
    if (( i > 0 )); then slug=bench-$i; fi
    cli tenant create "$slug" >/dev/null
    cli rules deploy "$work/rules.toml" --tenant "$slug" >/dev/null
    key=$(cli key create --tenant "$slug" --name bench | tail -1)
    [[ $key == plk_* ]] || { echo "no service key from the CLI for $slug: $(tail -5 "$work/cli.err")" >&2; exit 1; }
    if (( i == 0 )); then KEY=$key; fi
    printf '/v1/t/%s/collections/notes/docs\tauthorization: Bearer %s\n' "$slug" "$key" >> "$work/targets.tsv"
  done
  if (( TENANTS > 1 )); then echo "$TENANTS tenants made in $(( SECONDS - started )) s" >&2; fi
}
first=1
for n in $NODES; do
  echo "== $n node(s), $TENANTS tenant(s)" >&2
  start_cluster "$n"
  if (( first )); then
    cat > "$work/rules.toml" <<'TOML'
[notes]
read   = "auth != null"
create = "auth != null"

[feed]
read   = "auth != null"
create = "auth != null"
update = "auth != null"
TOML
    make_tenants
    sleep 2 # every node sees the CLI's changes (within a second, issue 17)
    first=0
  fi
  args=("${layout_args[@]}")
  for i in $(seq 0 $((n - 1))); do args+=("plinth node $((i + 1))=${node_cpus[$((i % ${#node_cpus[@]}))]}"); done
  cores=$(describe_cores "${args[@]}")
  echo "cores: $cores" >&2
  common=$(python3 -c "import json,sys; print(json.dumps(dict(bench='growth-nodes', commit=sys.argv[1], nodes=$n,
    cores=sys.argv[2], host_cpus=$(nproc), postgres='scripts/pg.sh: fsync, synchronous_commit, full_page_writes off',
    pg_max_connections_per_node=int(sys.argv[3]), warmup_seconds=$WARMUP_SECONDS, tenants=$TENANTS,
    **({'spread': sys.argv[4]} if $TENANTS > 1 else {})))[1:-1])" "$(bench_commit)" "$cores" "${PLINTH_PG_MAX_CONNECTIONS:-20}" "$SPREAD")
  emit() { echo "{$common,$1}" | python3 -c "import sys,json; print(json.dumps(json.loads(sys.stdin.read())))" | tee -a "$results" >&2; }

  if (( WARMUP_SECONDS > 0 )); then
    creates "$WARMUP_SECONDS" >/dev/null
    psql_q "ANALYZE" >/dev/null
  fi
  for r in $(seq "$RUNS"); do
    node_before=(); for pid in "${NODE_PIDS[@]}"; do node_before+=("$(cpu_ticks "$pid")"); done
    (( PG_STATS )) && psql_q "SELECT pg_stat_statements_reset()" >/dev/null
    pg_before=$(pg_cpu_ticks); proxy_before=$(cpu_ticks "$PROXY_PID"); client_before=$(children_ticks)
    line=$(creates "$SECONDS_PER_RUN")
    node_ticks=(); i=0
    for pid in "${NODE_PIDS[@]}"; do node_ticks+=($(( $(cpu_ticks "$pid") - node_before[i] ))); i=$((i + 1)); done
    pg_ticks=$(( $(pg_cpu_ticks) - pg_before )); proxy_ticks=$(( $(cpu_ticks "$PROXY_PID") - proxy_before ))
    client_ticks=$(( $(children_ticks) - client_before ))
    pg_stats_dump "$n node(s), $TENANTS tenant(s), run $r" "$(python3 -c 'import json,sys; print(max(json.loads(sys.argv[1])["requests"], 1))' "$line")"
    costs=$(python3 - "$line" "$HZ" "$SECONDS_PER_RUN" "$pg_ticks" "$proxy_ticks" "$client_ticks" "${node_ticks[@]}" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); hz, secs = float(sys.argv[2]), float(sys.argv[3])
pg, proxy, client = (int(x) for x in sys.argv[4:7])
nodes = [int(x) for x in sys.argv[7:]]
reqs = max(d["requests"], 1)
us = lambda t: round(t / hz * 1e6 / reqs, 1)
pct = lambda t: round(t / hz / secs * 100)
print(json.dumps({"node_cpu_us_per_req": us(sum(nodes)), "pg_cpu_us_per_req": us(pg),
                  "proxy_cpu_us_per_req": us(proxy), "client_cpu_us_per_req": us(client),
                  "cpu_pct": {"nodes": [pct(t) for t in nodes], "postgres": pct(pg),
                              "haproxy": pct(proxy), "load": pct(client)}})[1:-1])
PY
)
    emit "\"measure\":\"creates\",\"run\":$r,${line:1:-1},$costs"
  done
  fan=$(taskset -c "$CLIENT_CPUS" "$WS_BIN" --addr 127.0.0.1:$PROXY_PORT --tenant bench --token "$KEY" --collection feed \
    --mode latency --subscribers "$FANOUT_SUBSCRIBERS" --writes "$WRITES" 2>> "$work/ws.err")
  emit "\"measure\":\"fanout\",${fan:1:-1}"
  stop_cluster
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$OUT_DIR"
cp "$results" "$OUT_DIR/growth-nodes-$stamp.jsonl"
if (( PG_STATS )); then
  cp "$work/pg-stats.txt" "$OUT_DIR/growth-nodes-$stamp.pg-stats.txt"
  echo "statements: $OUT_DIR/growth-nodes-$stamp.pg-stats.txt" >&2
fi
echo "results: $OUT_DIR/growth-nodes-$stamp.jsonl" >&2
python3 benches/growth-plot.py --out "$PLOT_DIR" "$OUT_DIR/growth-nodes-$stamp.jsonl"
