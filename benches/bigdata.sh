#!/usr/bin/env bash
# SQLite's memory and read speed at scale, under several memory settings.
#
#   bash benches/bigdata.sh                   # 1,000,000 documents in one tenant
#   DOCS=10000000 bash benches/bigdata.sh     # the big run (~5 GB of disk under $TMPDIR)
#   PART=tenants bash benches/bigdata.sh      # only the many-tenants part (PART=one: only the first)
#
# Part 1 (one tenant): DOCS documents seeded once through the batch API, then for each
# "cache MiB:mmap MiB" of SETTINGS the server is restarted on the same files and measured:
# RSS (anonymous and file-backed), SQLite's heap (plinth_sqlite_memory_bytes), and gets by
# random id over all documents and lists (first page of 20 of one owner's documents,
# `indexes = [["owner"]]`), req/s, p50/p99 and server CPU per request, RUNS runs each.
# "0:0" is the behaviour before the budget: SQLite's default 2 MB cache per connection,
# no memory map, no node budget.
# Part 2 (many tenants): TENANTS tenants × TENANT_DOCS documents; for each of TENANT_SETTINGS
# ("cache:mmap:idle seconds:run hooks") RSS and SQLite's heap idle after start, right after
# one list and one get in every tenant, and once the idle connections are closed. (The
# hook runner claims every tenant's jobs at start and every 30 s, which opens its file.)
# Server on core 0, load generator on core 1 (taskset); loopback only; every load bounded
# in time (SECONDS_PER_RUN) and the seeding in count. Results: benches/results/bigdata-<date>.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${DOCS:-1000000}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONNS=${CONNS:-64}
SETTINGS=${SETTINGS:-"256:1024 1024:1024 256:0 1024:0 0:0"}
TENANTS=${TENANTS:-1000}
TENANT_DOCS=${TENANT_DOCS:-1000}
TENANT_SETTINGS=${TENANT_SETTINGS:-"0:0:300:true 256:1024:20:true 256:1024:20:false"}
PART=${PART:-all}
PORT=18711
P=http://127.0.0.1:$PORT
T=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-bigdata.XXXXXX")
out_dir=benches/results
mkdir -p "$out_dir"
results="$work/results.jsonl"
: > "$results"
SERVER_PID=

stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT

echo "building (release)..." >&2
cargo build --release --bin plinth >&2
cargo build --release --bench load >&2
BIN=$T/release/plinth
LOAD=$(ls -t "$T"/release/deps/load-* | grep -v '\.d$' | head -1)
H="python3 benches/bigdata.py"
echo "disk under $work: $(df -h --output=avail "$work" | tail -1)" >&2

json() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }
wait_http() { for _ in $(seq 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

start_server() { # data-dir cache-mib mmap-mib idle-s [run-hooks]
  PLINTH_SQLITE_CACHE_MIB=$2 PLINTH_SQLITE_MMAP_MIB=$3 PLINTH_SQLITE_IDLE=$4 PLINTH_RUN_HOOKS=${5:-true} PLINTH_ACCESS_TTL=7200 \
    taskset -c 0 "$BIN" --data-dir "$1" serve --listen 127.0.0.1:$PORT > "$work/server.out" 2> "$work/server.err" &
  SERVER_PID=$!
  wait_http "$P/healthz"
}

admin_setup() {
  local setup
  for _ in $(seq 50); do grep -q '"token"' "$work/server.out" && break; sleep 0.1; done
  setup=$(grep -o '"token":"[^"]*"' "$work/server.out" | cut -d'"' -f4)
  curl -sf -XPOST "$P/admin/v1/setup" -H 'content-type: application/json' \
    -d "{\"token\":\"$setup\",\"email\":\"bench@x.io\",\"password\":\"bench-password\"}" | json 'd["access_token"]'
}

# Memory of the server now, as JSON fields.
memory() {
  local sqlite
  sqlite=$(curl -sf "$P/metrics" | awk '$1 == "plinth_sqlite_memory_bytes" {print $2}')
  awk -v sqlite="${sqlite:-0}" '
    /^VmRSS:/ {rss=$2} /^RssAnon:/ {anon=$2} /^RssFile:/ {file=$2}
    END {printf "\"rss_kib\":%d,\"rss_anon_kib\":%d,\"rss_file_kib\":%d,\"sqlite_bytes\":%d", rss, anon, file, sqlite}
  ' "/proc/$SERVER_PID/status"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

run_load() { # workload cache mmap -- load args...
  local workload=$1 cache=$2 mmap=$3; shift 3
  local hz before line after db_mib
  hz=$(getconf CLK_TCK)
  db_mib=$(du -sm "$work/one" | cut -f1)
  for r in $(seq "$RUNS"); do
    before=$(cpu_ticks)
    line=$(taskset -c 1 "$LOAD" --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --label "$workload" "$@")
    after=$(cpu_ticks)
    echo "$line" | python3 -c "
import sys, json
d = json.loads(sys.stdin.read())
d.update({'part': 'one-tenant', 'workload': '$workload', 'run': $r, 'docs': $DOCS, 'db_mib': $db_mib,
          'cache_mib': $cache, 'mmap_mib': $mmap,
          'cpu_us_per_req': ($after - $before) / $hz * 1e6 / max(d['requests'], 1), $(memory)})
print(json.dumps(d))" | tee -a "$results" >&2
  done
}

# ---------------------------------------------------------------- one big tenant
if [[ $PART == all || $PART == one ]]; then
  echo "== one tenant, $DOCS documents" >&2
  start_server "$work/one" 256 1024 60
  ADMIN=$(admin_setup)
  curl -sf -XPOST "$P/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"slug":"big"}' >/dev/null
  curl -sf -XPUT "$P/admin/v1/tenants/big/rules" -H "authorization: Bearer $ADMIN" -H 'content-type: application/toml' --data-binary @- >/dev/null <<'TOML'
[notes]
read    = "auth != null"
indexes = [["owner"]]
TOML
  KEY=$(curl -sf -XPOST "$P/admin/v1/tenants/big/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"seed"}' | json 'd["key"]')
  echo "seeding $DOCS documents..." >&2
  start=$(date +%s)
  taskset -c 1 $H seed-one "$P" "$KEY" big "$DOCS"
  echo "seeded in $(( $(date +%s) - start )) s; files: $(du -sh "$work/one" | cut -f1)" >&2
  $H ids "$DOCS" "$work/ids.txt"
  seq -f 'u%02g' 0 99 > "$work/owners.txt"
  stop_server
  for s in $SETTINGS; do
    cache=${s%%:*} mmap=${s##*:}
    echo "-- cache ${cache} MiB, mmap ${mmap} MiB" >&2
    start_server "$work/one" "$cache" "$mmap" 60
    run_load get "$cache" "$mmap" --addr 127.0.0.1:$PORT --path '/v1/t/big/collections/notes/docs/{id}' \
      --ids "$work/ids.txt" --header "authorization: Bearer $KEY" --expect 200
    run_load list "$cache" "$mmap" --addr 127.0.0.1:$PORT \
      --path '/v1/t/big/collections/notes/docs?filter=doc.owner%20%3D%3D%20%22{id}%22&limit=20' \
      --ids "$work/owners.txt" --header "authorization: Bearer $KEY" --expect 200
    stop_server
  done
  rm -rf "$work/one"
fi

# ---------------------------------------------------------------- many tenants
if [[ $PART == all || $PART == tenants ]]; then
  echo "== $TENANTS tenants × $TENANT_DOCS documents" >&2
  start_server "$work/many" 256 1024 60
  ADMIN=$(admin_setup)
  start=$(date +%s)
  taskset -c 1 $H seed-tenants "$P" "$ADMIN" "$TENANTS" "$TENANT_DOCS" "$work/keys.txt"
  echo "seeded in $(( $(date +%s) - start )) s; files: $(du -sh "$work/many" | cut -f1)" >&2
  stop_server
  for s in $TENANT_SETTINGS; do
    IFS=: read -r cache mmap idle hooks <<< "$s"
    echo "-- cache ${cache} MiB, mmap ${mmap} MiB, idle close ${idle} s, hooks ${hooks}" >&2
    start_server "$work/many" "$cache" "$mmap" "$idle" "$hooks"
    sleep 2
    phase() {
      echo "{\"part\":\"tenants\",\"tenants\":$TENANTS,\"docs_per_tenant\":$TENANT_DOCS,\"cache_mib\":$cache,\"mmap_mib\":$mmap,\"idle_s\":$idle,\"hooks\":$hooks,\"phase\":\"$1\",$(memory)}" \
        | tee -a "$results" >&2
    }
    phase idle
    start=$(date +%s)
    taskset -c 1 $H touch "$P" "$work/keys.txt" "$TENANT_DOCS"
    phase "touched all in $(( $(date +%s) - start )) s"
    if (( idle < 60 )); then
      sleep $(( idle * 2 + 2 ))
      phase "after ${idle}s idle"
    fi
    stop_server
  done
fi

stamp=$(date -u +%Y-%m-%dT%H%MZ)
cp "$results" "$out_dir/bigdata-$stamp.jsonl"
python3 benches/bigdata.py table "$out_dir/bigdata-$stamp.jsonl"
