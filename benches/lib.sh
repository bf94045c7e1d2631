# shellcheck shell=bash disable=SC2034,SC2154  # HZ and $work: the sourcing driver's
# Sourced by the HTTP benchmarks (docs-bench.sh, generators.sh, the growth-curve drivers
# benches/growth-*.sh): binaries, waiting, reading a process's memory, descriptors and CPU
# from /proc, and (below) the `bench` tenant's setup: a Plinth pinned to core 0, the first
# admin, the tenant with its rules and a service key, users, documents through the batch
# route. Loopback only.
#
# Binaries: PLINTH_BIN (a release `plinth`) skips the build; the load programs then come
# from the same target's deps/ (or LOAD_BIN, WS_BIN). Without PLINTH_BIN the driver runs
# `cargo build --release --bin plinth --benches` (one invocation, one feature set).

# resolve_bins: sets PLINTH_BIN, LOAD_BIN, WS_BIN.
resolve_bins() {
  local target=${CARGO_TARGET_DIR:-target}
  if [[ -z ${PLINTH_BIN:-} ]]; then
    echo "building (release)..." >&2
    cargo build --release --bin plinth --benches >&2
    PLINTH_BIN=$target/release/plinth
  fi
  local deps
  deps=$(dirname "$PLINTH_BIN")/deps
  LOAD_BIN=${LOAD_BIN:-$(newest_bench "$deps" load)}
  WS_BIN=${WS_BIN:-$(newest_bench "$deps" ws_fanout)}
  for b in "$PLINTH_BIN" "$LOAD_BIN" "$WS_BIN"; do
    [[ -x $b ]] || { echo "missing binary '$b' (build with: cargo build --release --bin plinth --benches)" >&2; return 1; }
  done
  echo "plinth: $PLINTH_BIN; load: $LOAD_BIN; ws_fanout: $WS_BIN" >&2
}

newest_bench() { # deps-dir name
  # shellcheck disable=SC2010  # cargo's names: <name>-<hash>, no spaces
  ls -t "$1/$2"-* 2>/dev/null | grep -v '\.d$' | head -1 || true
}

json() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }

wait_http() { # url [tries of 0.1 s]
  for _ in $(seq "${2:-300}"); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
socket_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
# user + system CPU of a process, in clock ticks (fields 14 and 15 after the name).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)

# The cores each role runs on, as text for the output: "core 0: a, b; core 1: c".
describe_cores() { # role=cpus ...
  python3 - "$@" <<'PY'
import sys
cores = {}
for arg in sys.argv[1:]:
    role, cpus = arg.split("=", 1)
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        for c in range(int(lo), int(hi or lo) + 1):
            cores.setdefault(c, []).append(role)
print("; ".join(f"core {c}: {', '.join(r)}" for c, r in sorted(cores.items())))
PY
}

# Raises the soft descriptor limit to the hard one (processes started after inherit it).
raise_fd_limit() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo "descriptor limit: $(ulimit -n) (hard $(ulimit -Hn))" >&2
}

# stop_pid PID: SIGTERM, then SIGKILL after 10 s; only ever a process this driver started.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The commit the figures come from (of this checkout; PLINTH_BIN may be another build).
bench_commit() { git rev-parse --short HEAD 2>/dev/null || echo unknown; }

# on_error LINE: the failing line and the end of each log in $work (removed at exit).
on_error() {
  echo "failed at line $1; the end of the logs:" >&2
  for f in "$work"/*.err "$work"/*.log "$work"/*.out; do
    [[ -s $f ]] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
  done
  return 0
}

# plinth_start PORT DATA_DIR: sets SERVER_PID and P (the base URL).
plinth_start() {
  local port=$1 dir=$2
  P=http://127.0.0.1:$port
  PLINTH_ACCESS_TTL=7200 PLINTH_LOGIN_PER_IP=100000 taskset -c 0 "${PLINTH_BIN:-target/release/plinth}" --data-dir "$dir" \
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

# ---------------------------------------------------------------- many tenants (issue 17)
# The growth and idle-tenant drivers: a template tenant, exported, and imported under many
# slugs. Uses PLINTH_BIN and the driver's $work.

# tenant_template DOCS PORT: tenant `tpl` in $work/tmpl (DOCS documents in `notes`, rules
# reading `notes` for signed-in callers with an index on `status`, one user with a
# password, a service key), made through the CLI and the batch API and exported to
# $work/tpl.ndjson; sets KEY, the template's service key, which every import of the file
# shares (so one key reads every tenant).
tenant_template() {
  local docs=$1 port=$2 pid
  cat > "$work/rules.toml" <<'TOML'
[notes]
read    = "auth != null"
create  = "auth != null"
indexes = [["status"]]
TOML
  "$PLINTH_BIN" --data-dir "$work/tmpl" tenant create tpl >/dev/null 2>> "$work/cli.err"
  "$PLINTH_BIN" --data-dir "$work/tmpl" rules deploy "$work/rules.toml" --tenant tpl >/dev/null 2>> "$work/cli.err"
  KEY=$("$PLINTH_BIN" --data-dir "$work/tmpl" key create --tenant tpl --name bench 2>> "$work/cli.err" | tail -1)
  [[ $KEY == plk_* ]] || { echo "no service key from the CLI: $(tail -5 "$work/cli.err")" >&2; return 1; }
  printf 'growth-bench-Passw0rd-17\n' | "$PLINTH_BIN" --data-dir "$work/tmpl" users create u@bench.io --tenant tpl --password-stdin >/dev/null 2>> "$work/cli.err"
  PLINTH_LOG=warn "$PLINTH_BIN" --data-dir "$work/tmpl" serve --listen "127.0.0.1:$port" >> "$work/tmpl.out" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:$port/healthz" 1200
  python3 benches/growth_tenants.py seed-docs "http://127.0.0.1:$port" "$KEY" tpl "$docs"
  stop_pid "$pid"
  "$PLINTH_BIN" --data-dir "$work/tmpl" tenant export tpl > "$work/tpl.ndjson" 2>> "$work/cli.err"
  echo "template: $(wc -l < "$work/tpl.ndjson") lines, $(wc -c < "$work/tpl.ndjson") bytes" >&2
}

# seed_tenants DATA_DIR FROM TO [UNTIL]: imports $work/tpl.ndjson as tenants t<FROM> ..
# t<TO - 1> (t00000 ...) into DATA_DIR while no server runs, SEED_CHUNK slugs (500) per
# `plinth tenant import` process, SEED_JOBS processes (1) at once; each import is a
# real tenant of its own (control row, SQLite file, documents, user, key). Stops after
# the chunk that passes the epoch second UNTIL. Appends the slugs made to
# $work/slugs.txt; sets SEEDED to the count reached.
seed_tenants() {
  local data=$1 from=$2 to=$3 until=${4:-0} chunk=${SEED_CHUNK:-500} jobs=${SEED_JOBS:-1}
  local i end j pids slugs
  SEEDED=$from
  for ((i = from; i < to; i += chunk * jobs)); do
    if (( until > 0 && $(date +%s) > until )); then
      break
    fi
    pids=()
    for ((j = i; j < to && j < i + chunk * jobs; j += chunk)); do
      end=$(( j + chunk < to ? j + chunk : to ))
      mapfile -t slugs < <(seq -f 't%05g' "$j" $((end - 1)))
      "$PLINTH_BIN" --data-dir "$data" tenant import "${slugs[@]}" < "$work/tpl.ndjson" \
        > /dev/null 2>> "$work/import.err" &
      pids+=("$!")
    done
    for j in "${pids[@]}"; do
      wait "$j" || { echo "an import failed: $(tail -3 "$work/import.err")" >&2; return 1; }
    done
    SEEDED=$(( i + chunk * jobs < to ? i + chunk * jobs : to ))
    seq -f 't%05g' "$i" $((SEEDED - 1)) >> "$work/slugs.txt"
    echo "  $SEEDED / $to tenants" >&2
  done
}
