# shellcheck shell=bash disable=SC2034,SC2154  # HZ and $work: the sourcing driver's
# Sourced by the growth-curve drivers (benches/growth-*.sh, issue 17): binaries, waiting,
# and reading a process's memory, descriptors and CPU from /proc. The older drivers keep
# their own copies of these few lines.
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
