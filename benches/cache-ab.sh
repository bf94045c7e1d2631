#!/usr/bin/env bash
# SQLite's per-connection cache cap, A/B on one big tenant (issue 16: "page cache ...
# measured at 10M documents"). Seeds the `owned` workload of docs-bench.sh once, then
# restarts Plinth on the same data with each PLINTH_SQLITE_CONN_CACHE_MIB of ARMS in turn
# (order alternating per round) and measures oget, olist and ocreate at 16 and 64
# connections, with the server's CPU per request:
#   OWNED_DOCS=10000000 ARMS="16 0" ROUNDS=3 bash benches/cache-ab.sh
# (0: a connection may cache up to the node's whole budget, PLINTH_SQLITE_CACHE_MIB.)
# Writes benches/results/cache-ab-<date>.jsonl and prints medians per arm. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
OWNED_DOCS=${OWNED_DOCS:-10000000}
ARMS=${ARMS:-16 0}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
OWNERS=100
PORT=18741
work=$(mktemp -d /tmp/plinth-cache-ab.XXXXXX)
out=benches/results/cache-ab-$(date -u +%Y-%m-%dT%H%MZ).jsonl
mkdir -p benches/results
trap 'pkill -f "listen 127.0.0.1:$PORT" 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
resolve_bins
HZ=$(getconf CLK_TCK)

plinth_start $PORT "$work/plinth"
plinth_tenant "$work/plinth" <<'TOML'
[owned]
read    = "auth != null && doc.owner == auth.uid"
create  = "auth != null && new.owner == auth.uid"
indexes = [["owner"]]
TOML
plinth_users $OWNERS
echo "seeding $OWNED_DOCS owned documents..." >&2
plinth_seed owned "$OWNED_DOCS" o 8 plain "$work/owned.txt" "${UIDS[@]}"
printf '%s\n' "${TOKENS[@]}" > "$work/tokens.txt"
awk 'NR==FNR { t[NR-1] = $0; next } { print $1, t[$2] }' "$work/tokens.txt" "$work/owned.txt" > "$work/oget.txt"
stop_pid "$SERVER_PID"

measure() { # arm label conns -- load args
  local arm=$1 label=$2 conns=$3 before after; shift 3
  before=$(cpu_ticks "$SERVER_PID")
  taskset -c 1 "$LOAD_BIN" --connections "$conns" --seconds "$SECONDS_PER_RUN" --label "$label" \
    --addr 127.0.0.1:$PORT "$@" > "$work/run.json"
  after=$(cpu_ticks "$SERVER_PID")
  python3 -c "import json; d=json.load(open('$work/run.json')); d['arm']='conn_cache_mib=$arm'; d['round']=$round
d['server_cpu_us_per_req']=round(($after-$before)/$HZ*1e6/max(d['requests'],1),1); print(json.dumps(d))" | tee -a "$out" >&2
}

for round in $(seq "$ROUNDS"); do
  arms=($ARMS); (( round % 2 == 0 )) && arms=($(printf '%s\n' $ARMS | tac))
  for arm in "${arms[@]}"; do
    PLINTH_SQLITE_CONN_CACHE_MIB=$arm plinth_start $PORT "$work/plinth"
    for c in 16 64; do
      measure "$arm" oget $c --path '/v1/t/bench/collections/owned/docs/{id}' --ids "$work/oget.txt" \
        --header "authorization: Bearer {tok}" --expect 200
      measure "$arm" olist $c \
        --path "/v1/t/bench/collections/owned/docs?filter=doc.owner%20%3D%3D%20%22${UIDS[0]}%22&limit=20" \
        --header "authorization: Bearer ${TOKENS[0]}" --expect 200
      measure "$arm" ocreate $c --method POST --path /v1/t/bench/collections/owned/docs \
        --header "authorization: Bearer ${TOKENS[99]}" --header 'content-type: application/json' \
        --body "{\"owner\":\"${UIDS[99]}\",\"title\":\"t{n}\",\"n\":-1}" --expect 201
    done
    echo "{\"label\": \"memory\", \"arm\": \"conn_cache_mib=$arm\", \"round\": $round, \"rss_kib\": $(rss_kib "$SERVER_PID")}" | tee -a "$out" >&2
    stop_pid "$SERVER_PID"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1])]
g = defaultdict(list)
for r in rows:
    if r["label"] != "memory":
        g[(r["label"], r["connections"], r["arm"])].append(r)
print(f"results: {sys.argv[1]}")
print("| workload | conns | arm | req/s | p50 ms | p99 ms | CPU µs/req |")
print("|---|---:|---|---:|---:|---:|---:|")
for (label, conns, arm), rs in sorted(g.items()):
    m = lambda k: statistics.median(r[k] for r in rs)
    print(f"| {label} | {conns} | {arm} | {m('rps'):,.0f} | {m('p50_us')/1000:.2f} | {m('p99_us')/1000:.2f} | {m('server_cpu_us_per_req'):.0f} |")
for r in rows:
    if r["label"] == "memory":
        print(f"RSS after round {r['round']}, {r['arm']}: {r['rss_kib']/1024:.0f} MiB")
PY
