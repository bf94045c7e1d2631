#!/usr/bin/env bash
# Growth curve: tenants on one node (issue 17). SQLite, one file per tenant.
#
#   bash benches/growth-tenants.sh                       # 1, 100, 1,000, 10,000 tenants
#   PLINTH_BIN=/path/to/release/plinth bash benches/growth-tenants.sh   # no build
#   TENANTS="1 100" RUNS=1 SECONDS_PER_RUN=3 bash benches/growth-tenants.sh   # smoke
#
# Every tenant is a copy of one template (DOCS_PER_TENANT documents, one user with a
# password, rules, a service key): the template is made once through the CLI and the API,
# exported, and imported under each new slug with `plinth tenant import t00000 t00001 ...`
# while no server runs (SEED_CHUNK slugs per process, SEED_JOBS processes at once; no
# password hashing: the bulk path; lib.sh `seed_tenants`). Each is a tenant of its own:
# control row, SQLite file, documents, user, key. The counts grow (1, then 99 more, ...);
# SEED_MAX_SECS bounds the seeding of a step, and a step that ran out of time is measured
# at the count it reached (the row says so). The imported service key is the template's,
# so one key reads every tenant.
#
# At each count, on a freshly started server (PLINTH_SQLITE_IDLE=IDLE_SECS, hooks off by
# default: HOOKS=true to include the hook runner, which opens every tenant's file at start
# and every 30 s, so a tenant is not reliably cold):
#   idle    after SETTLE_SECS: RSS (anonymous + file), open descriptors, SQLite's heap,
#           tenant files open; and how long the server took to answer /healthz
#   served  one get in every tenant (the first request each gets after the start: its
#           file's first open, p50/p99), then IDLE_SECS * 3 + DECAY_SECS later the same
#           figures as idle: what every tenant the server served costs once idle (the
#           200 MiB goal; jemalloc gives freed pages back after its 10 s decay)
#   cold    first request to a tenant whose file is closed (get by id, service key,
#           one keep-alive connection from Python), then the same request again (warm);
#           rounds over all tenants, waiting 2 x IDLE_SECS + 1 between rounds so the
#           files close again, up to COLD_SAMPLE requests or COLD_MAX_SECS seconds
#   spread  load.rs, CONNS connections for SECONDS_PER_RUN s, each request to a random
#           tenant (get by id): req/s, p50/p99, server CPU per request, and descriptors,
#           RSS and tenant files open right after, RUNS times
# Server on SERVER_CPUS (0), clients on CLIENT_CPUS (1), taskset; loopback only.
# Results: $OUT_DIR/growth-tenants-<date>.jsonl (OUT_DIR=benches/results), then
# benches/growth-plot.py draws docs/growth/*.png (PLOT_DIR) and prints the table.
# Needs: python3, curl, taskset; matplotlib (the plot script installs it with pip).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
TENANTS=${TENANTS:-"1 100 1000 10000"}
DOCS_PER_TENANT=${DOCS_PER_TENANT:-20}
IDLE_SECS=${IDLE_SECS:-2}
HOOKS=${HOOKS:-false}
SETTLE_SECS=${SETTLE_SECS:-$((IDLE_SECS * 2 + 3))}
DECAY_SECS=${DECAY_SECS:-12}
COLD_SAMPLE=${COLD_SAMPLE:-1000}
COLD_MAX_SECS=${COLD_MAX_SECS:-120}
CONNS=${CONNS:-64}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
RUNS=${RUNS:-3}
SEED_MAX_SECS=${SEED_MAX_SECS:-3600}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
OUT_DIR=${OUT_DIR:-benches/results}
PLOT_DIR=${PLOT_DIR:-docs/growth}
PORT=18721
P=http://127.0.0.1:$PORT
H="python3 benches/growth_tenants.py"

resolve_bins
raise_fd_limit
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-growth-tenants.XXXXXX")
results=$work/results.jsonl
: > "$results"
SERVER_PID=
cleanup() { stop_pid "$SERVER_PID"; rm -rf "$work"; }
trap cleanup EXIT
trap 'on_error $LINENO' ERR
cores=$(describe_cores "plinth=$SERVER_CPUS" "clients=$CLIENT_CPUS")
echo "cores: $cores" >&2
COMMON=$(python3 -c "import json,sys; print(json.dumps(dict(bench='growth-tenants', commit=sys.argv[1],
  docs_per_tenant=$DOCS_PER_TENANT, idle_s=$IDLE_SECS, hooks='$HOOKS' == 'true', cores=sys.argv[2],
  host_cpus=$(nproc)))[1:-1])" "$(bench_commit)" "$cores")

start_server() { # data-dir
  local t0=$EPOCHREALTIME
  PLINTH_SQLITE_IDLE=$IDLE_SECS PLINTH_RUN_HOOKS=$HOOKS PLINTH_LOG=warn \
    taskset -c "$SERVER_CPUS" "$PLINTH_BIN" --data-dir "$1" serve --listen 127.0.0.1:$PORT \
    >> "$work/server.out" 2>> "$work/server.err" &
  SERVER_PID=$!
  wait_http "$P/healthz" 1200
  START_MS=$(python3 -c "print(round(($EPOCHREALTIME - $t0) * 1000))")
}

emit() { # JSON fields (without braces)
  echo "{$COMMON,$1}" | python3 -c "import sys,json; print(json.dumps(json.loads(sys.stdin.read())))" \
    | tee -a "$results" >&2
}

server_state() { # the server's memory and descriptors now, as JSON fields
  local sqlite
  sqlite=$(curl -sf "$P/metrics" | awk '$1 == "plinth_sqlite_memory_bytes" {print $2}')
  awk -v sqlite="${sqlite:-0}" -v fds="$(fd_count "$SERVER_PID")" -v files="$($H open-files "$SERVER_PID")" '
    /^VmRSS:/ {rss=$2} /^RssAnon:/ {anon=$2} /^RssFile:/ {file=$2}
    END {printf "\"rss_kib\":%d,\"rss_anon_kib\":%d,\"rss_file_kib\":%d,\"sqlite_bytes\":%d,\"fds\":%d,\"tenant_files_open\":%d",
         rss, anon, file, sqlite, fds, files}
  ' "/proc/$SERVER_PID/status"
}

# ---------------------------------------------------------------- the template tenant
echo "== template tenant: $DOCS_PER_TENANT documents, one user, a service key" >&2
tenant_template "$DOCS_PER_TENANT" "$PORT"

# ---------------------------------------------------------------- the curve
created=0
: > "$work/slugs.txt"
for target in $TENANTS; do
  echo "== $target tenants" >&2
  seed_start=$EPOCHREALTIME
  seed_start_s=$(date +%s)
  step_from=$created
  seed_tenants "$work/data" "$created" "$target" $((seed_start_s + SEED_MAX_SECS))
  created=$SEEDED
  if (( created < target )); then
    echo "seeding stopped by SEED_MAX_SECS=$SEED_MAX_SECS at $created tenants" >&2
  fi
  seed_ms_each=$(python3 -c "print(round(($EPOCHREALTIME - $seed_start) * 1000 / max($created - $step_from, 1), 1))")
  n=$created
  scale="\"tenants\":$n,\"tenants_wanted\":$target"

  start_server "$work/data"
  sleep "$SETTLE_SECS"
  emit "$scale,\"measure\":\"idle\",\"settle_s\":$SETTLE_SECS,\"start_ms\":$START_MS,\"import_ms_per_tenant\":$seed_ms_each,\"data_mib\":$(du -sm "$work/data" | cut -f1),$(server_state)"

  served=$(taskset -c "$CLIENT_CPUS" $H touch "$P" "$KEY" "$work/slugs.txt")
  sleep $((IDLE_SECS * 3 + DECAY_SECS))
  emit "$scale,\"measure\":\"served\",${served:1:-1},$(server_state)"

  cold=$(taskset -c "$CLIENT_CPUS" $H cold "$P" "$KEY" "$work/slugs.txt" "$SERVER_PID" "$COLD_SAMPLE" "$COLD_MAX_SECS" $((IDLE_SECS * 2 + 1)))
  emit "$scale,\"measure\":\"cold\",${cold:1:-1}"

  for r in $(seq "$RUNS"); do
    before=$(cpu_ticks "$SERVER_PID")
    line=$(taskset -c "$CLIENT_CPUS" "$LOAD_BIN" --addr 127.0.0.1:$PORT --connections "$CONNS" --seconds "$SECONDS_PER_RUN" \
      --label spread --ids "$work/slugs.txt" --path '/v1/t/{id}/collections/notes/docs/d00000' \
      --header "authorization: Bearer $KEY" --expect 200)
    after=$(cpu_ticks "$SERVER_PID")
    cpu=$(python3 -c "import json; d=json.loads('''$line'''); print(round(($after - $before) / $HZ * 1e6 / max(d['requests'], 1), 1))")
    emit "$scale,\"measure\":\"spread\",\"run\":$r,${line:1:-1},\"server_cpu_us_per_req\":$cpu,$(server_state)"
  done
  stop_pid "$SERVER_PID"; SERVER_PID=
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$OUT_DIR"
cp "$results" "$OUT_DIR/growth-tenants-$stamp.jsonl"
echo "results: $OUT_DIR/growth-tenants-$stamp.jsonl" >&2
python3 benches/growth-plot.py --out "$PLOT_DIR" "$OUT_DIR/growth-tenants-$stamp.jsonl"
