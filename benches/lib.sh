# Shared setup of the HTTP benchmarks (sourced by docs-bench.sh and generators.sh): start
# a release Plinth pinned to core 0, make the admin, the `bench` tenant, its rules, a
# service key and users, seed documents through the batch route, and read the server's
# CPU time from /proc. Loopback only.

json() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# utime + stime of a process, in clock ticks (no client can flatter it).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# plinth_start PORT DATA_DIR: sets SERVER_PID and P (the base URL).
plinth_start() {
  local port=$1 dir=$2
  P=http://127.0.0.1:$port
  PLINTH_ACCESS_TTL=7200 PLINTH_LOGIN_PER_IP=100000 taskset -c 0 target/release/plinth --data-dir "$dir" \
    serve --listen 127.0.0.1:$port > "$dir.out" 2> "$dir.err" &
  SERVER_PID=$!
  wait_http "$P/healthz"
}

# plinth_tenant DATA_DIR < rules.toml: the first admin, tenant `bench` with those rules
# and a service key; sets ADMIN and KEY.
plinth_tenant() {
  local setup
  setup=$(grep -o '"token":"[^"]*"' "$1.out" | cut -d'"' -f4)
  ADMIN=$(curl -sf -XPOST "$P/admin/v1/setup" -H 'content-type: application/json' \
    -d "{\"token\":\"$setup\",\"email\":\"bench@x.io\",\"password\":\"bench-password\"}" | json 'd["access_token"]')
  curl -sf -XPOST "$P/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"slug":"bench"}' >/dev/null
  curl -sf -XPUT "$P/admin/v1/tenants/bench/rules" -H "authorization: Bearer $ADMIN" -H 'content-type: application/toml' --data-binary @- >/dev/null
  KEY=$(curl -sf -XPOST "$P/admin/v1/tenants/bench/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"seed"}' | json 'd["key"]')
}

# plinth_users N: signs up u0..u(N-1)@bench.io; sets UIDS and TOKENS (arrays).
plinth_users() {
  local r i
  UIDS=()
  TOKENS=()
  for i in $(seq 0 $(($1 - 1))); do
    r=$(curl -sf -XPOST "$P/v1/t/bench/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"u$i@bench.io\",\"password\":\"bench-password\"}")
    UIDS+=("$(echo "$r" | json 'd["user"]["id"]')")
    TOKENS+=("$(echo "$r" | json 'd["access_token"]')")
  done
}

# plinth_seed COLLECTION N PREFIX WIDTH SHAPE IDS_FILE OWNER...: N documents through the
# batch route, ids PREFIX + i zero-padded to WIDTH, owner i % owners. SHAPE `status`:
# {owner, title, status (open/closed alternating by block of owners), created: i};
# `plain`: {owner, title, n: i}. IDS_FILE (or -) gets a sample of up to 100,000 ids,
# each with its owner's index.
plinth_seed() {
  python3 - "$P" "$KEY" "$@" <<'PY' >&2
import json, sys, time, urllib.request
base, key, coll, n, prefix, width, shape, ids_path, *uids = sys.argv[1:]
n, width = int(n), int(width)
def doc(i):
    d = {"owner": uids[i % len(uids)], "title": f"note {i}"}
    if shape == "status":
        d.update(status="open" if (i // len(uids)) % 2 == 0 else "closed", created=i)
    else:
        d["n"] = i
    return d
t0 = time.monotonic()
for start in range(0, n, 500):
    writes = [{"op": "put", "collection": coll, "id": f"{prefix}{i:0{width}d}", "data": doc(i)}
              for i in range(start, min(n, start + 500))]
    req = urllib.request.Request(f"{base}/v1/t/bench/batch", data=json.dumps({"writes": writes}).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
    if start and start % 1_000_000 == 0:
        print(f"  {start:,} in {time.monotonic() - t0:.0f} s", flush=True)
print(f"  seeded {n:,} {coll} in {time.monotonic() - t0:.0f} s", flush=True)
if ids_path != "-":
    step = max(1, n // 100_000)
    with open(ids_path, "w") as f:
        for i in range(0, n, step):
            f.write(f"{prefix}{i:0{width}d} {i % len(uids)}\n")
PY
}
