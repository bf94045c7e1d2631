#!/usr/bin/env bash
# The same workloads measured by three load generators, with the server's own CPU per
# request read from /proc (which no client can flatter). Issue 16 found gets at
# 10-13.5k/s under wrk against 20k+/s under benches/load.rs; this says which is right.
#
#   bash benches/generators.sh     # RUNS=3 SECONDS_PER_RUN=8 CONNS=64 DOCS=100000 USERS=100
#
# Server (release) on core 0, generator on core 1 (taskset), one generator at a time,
# runs interleaved (load, wrk, h2load, load, wrk, h2load, ...). Workloads, the shape issue
# 16 describes: 100 users, 100,000 documents (1,000 per owner, owners interleaved), rules
# `read = doc.owner == auth.uid`, `indexes = [["owner"]]`; the caller is user 0:
#   get   GET by id, ids drawn from the caller's 1,000 documents (wrk: a Lua `request`;
#         h2load: the URI list, taken in turn)
#   get1  GET of one fixed id (every generator sends the same bytes; no Lua)
#   list  ?filter=doc.owner == "<uid>"&limit=20 (the default order)
#   create POST a document owned by the caller
#   get100 wrk only: GET by id over the first 10,000 documents, each with its owner's
#         token (100 users' tokens in turn; load.rs and h2load send one header set)
# Per run: requests/s as the generator counts them, the server's CPU µs per request
# (utime+stime of the server process / requests), the generator's CPU share of its core.
# Needs: wrk, h2load (Debian: wrk, nghttp2-client), python3, curl, taskset. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
DOCS=${DOCS:-100000}
USERS=${USERS:-100}
WORKLOADS=${WORKLOADS:-"get get1 list create get100"}
PORT=18711
work=$(mktemp -d /tmp/plinth-gen.XXXXXX)
out_dir=benches/results
mkdir -p "$out_dir"
results="$work/results.jsonl"
: > "$results"
cleanup() { pkill -f "listen 127.0.0.1:$PORT" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for tool in wrk h2load; do
  command -v $tool >/dev/null || { echo "needs $tool (apt-get install wrk nghttp2-client)" >&2; exit 1; }
done
echo "building (release)..." >&2
cargo build --release --bin plinth >&2
cargo build --release --bench load >&2
LOAD=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)

source benches/lib.sh
plinth_start $PORT "$work/data"
SERVER=$SERVER_PID
plinth_tenant "$work/data" <<'TOML'
[notes]
read    = "auth != null && doc.owner == auth.uid"
create  = "auth != null && new.owner == auth.uid"
indexes = [["owner"]]
TOML
plinth_users "$USERS"
printf '%s\n' "${TOKENS[@]}" > "$work/tokens.txt"
TOKEN=${TOKENS[0]}
echo "seeding $DOCS documents over $USERS owners..." >&2
plinth_seed notes "$DOCS" s 7 plain - "${UIDS[@]}"
# The caller's documents: every USERS-th id starting at 0.
seq 0 "$USERS" $((DOCS - 1)) | awk '{printf "s%07d\n", $1}' > "$work/ids.txt"
DOCS_PATH=/v1/t/bench/collections/notes/docs
awk -v p="$P$DOCS_PATH/" '{print p $1}' "$work/ids.txt" > "$work/uris.txt"
ONE=$(head -1 "$work/ids.txt")
LIST_QS="filter=doc.owner%20%3D%3D%20%22${UIDS[0]}%22&limit=20"
BODY="{\"owner\":\"${UIDS[0]}\",\"title\":\"t\",\"n\":-1}"
echo "$BODY" > "$work/body.json"
cat > "$work/get.lua" <<LUA
local ids = {}
for line in io.lines("$work/ids.txt") do ids[#ids + 1] = line end
local headers = { ["authorization"] = "Bearer $TOKEN" }
request = function()
  return wrk.format("GET", "$DOCS_PATH/" .. ids[math.random(#ids)], headers)
end
LUA
cat > "$work/get100.lua" <<LUA
local tokens = {}
for line in io.lines("$work/tokens.txt") do tokens[#tokens + 1] = "Bearer " .. line end
local span = math.min($DOCS, 10000)
request = function()
  local i = math.random(0, span - 1)
  return wrk.format("GET", string.format("$DOCS_PATH/s%07d", i),
    { ["authorization"] = tokens[(i % #tokens) + 1] })
end
LUA
cat > "$work/create.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["content-type"] = "application/json"
LUA

# measure GEN WORKLOAD RUN: runs one generator, prints one JSON line.
measure() {
  local gen=$1 wl=$2 run=$3 out="$work/out.txt" path method=GET expect=200
  case $wl in
    get|get1|get100) path="$DOCS_PATH/$ONE" ;;
    list) path="$DOCS_PATH?$LIST_QS" ;;
    create) path="$DOCS_PATH"; method=POST; expect=201 ;;
  esac
  local cmd=()
  case $gen in
    load)
      cmd=("$LOAD" --addr 127.0.0.1:$PORT --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --label "$wl"
           --method $method --header "authorization: Bearer $TOKEN" --expect $expect)
      case $wl in
        get) cmd+=(--path "$DOCS_PATH/{id}" --ids "$work/ids.txt") ;;
        create) cmd+=(--path "$path" --header 'content-type: application/json' --body "$BODY") ;;
        *) cmd+=(--path "$path") ;;
      esac ;;
    wrk)
      cmd=(wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -H "authorization: Bearer $TOKEN")
      case $wl in
        get) cmd+=(-s "$work/get.lua") ;;
        get100) cmd+=(-s "$work/get100.lua") ;;
        create) cmd+=(-s "$work/create.lua") ;;
      esac
      cmd+=("$P$path") ;;
    h2load)
      cmd=(h2load --h1 -c"$CONNS" -m1 -D"$SECONDS_PER_RUN" -H "authorization: Bearer $TOKEN")
      case $wl in
        get) cmd+=(-i "$work/uris.txt") ;;
        create) cmd+=(-d "$work/body.json" -H 'content-type: application/json' "$P$path") ;;
        *) cmd+=("$P$path") ;;
      esac ;;
  esac
  local before after
  before=$(cpu_ticks "$SERVER")
  python3 - "$out" "${cmd[@]}" > "$work/gen.json" <<'PY'
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
with open(out, "w") as f:
    subprocess.run(["taskset", "-c", "1", *cmd], stdout=f, stderr=subprocess.STDOUT, check=True)
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"gen_cpu_s": r.ru_utime + r.ru_stime, "wall_s": wall}))
PY
  after=$(cpu_ticks "$SERVER")
  python3 - "$gen" "$wl" "$run" "$out" "$work/gen.json" "$((after - before))" "$HZ" "$SECONDS_PER_RUN" <<'PY' | tee -a "$results" >&2
import json, re, sys
gen, wl, run, out, genf, ticks, hz, secs = sys.argv[1:9]
text = open(out).read()
g = json.load(open(genf))
row = {"generator": gen, "workload": wl, "run": int(run)}
if gen == "load":
    d = json.loads(text.strip().splitlines()[-1])
    bad = sum(v for k, v in d["statuses"].items() if not k.startswith("2"))
    row.update(requests=d["requests"], rps=d["rps"], p50_ms=d["p50_us"] / 1000, p99_ms=d["p99_us"] / 1000, non2xx=bad + d["errors"])
elif gen == "wrk":
    reqs = int(re.search(r"(\d+) requests in", text).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    def ms(label):
        m = re.search(label + r"\s+([\d.]+)(us|ms|s)\b", text)
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
    row.update(requests=reqs, rps=rps, p50_ms=ms("50%"), p99_ms=ms("99%"), non2xx=int(non.group(1)) if non else 0)
else:
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    done = int(m.group(3))
    row.update(requests=done, rps=rps, p50_ms=None, p99_ms=None,
               non2xx=int(st.group(3)) + int(st.group(4)) + int(m.group(5)) + int(m.group(6)))
cpu_s = int(ticks) / int(hz)
row["server_cpu_us_per_req"] = round(cpu_s * 1e6 / max(row["requests"], 1), 1)
row["server_cpu_share"] = round(cpu_s / float(secs), 3)
row["gen_cpu_share"] = round(g["gen_cpu_s"] / float(secs), 3)
print(json.dumps(row))
PY
}

for wl in $WORKLOADS; do
  for r in $(seq "$RUNS"); do
    gens="load wrk h2load"; [[ $wl == get100 ]] && gens=wrk
    for gen in $gens; do
      measure "$gen" "$wl" "$r"
    done
  done
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
cp "$results" "$out_dir/generators-$stamp.jsonl"
python3 - "$out_dir/generators-$stamp.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| workload | generator | req/s | p50 ms | p99 ms | server CPU µs/req | server core busy | generator core busy | non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
keys = []
for r in rows:
    k = (r["workload"], r["generator"])
    if k not in keys:
        keys.append(k)
med = lambda xs: statistics.median(xs) if xs and None not in xs else None
for wl, gen in keys:
    rs = [r for r in rows if r["workload"] == wl and r["generator"] == gen]
    f = lambda k: med([r[k] for r in rs])
    p = lambda v, fmt: "–" if v is None else fmt.format(v)
    print(f"| {wl} | {gen} | {f('rps'):,.0f} | {p(f('p50_ms'), '{:.2f}')} | {p(f('p99_ms'), '{:.2f}')} | "
          f"{f('server_cpu_us_per_req'):.1f} | {f('server_cpu_share'):.0%} | {f('gen_cpu_share'):.0%} | "
          f"{sum(r['non2xx'] for r in rs)} |")
PY
