#!/usr/bin/env bash
# Creates in a big tenant (issue 16: "creates at 10M documents within 20% of an empty
# tenant"), two ways, with the server's CPU per create read from /proc:
#
#   builds  A/B of two builds at OWNED_DOCS: each build seeds its own data directory (a
#           newer build's migrations cannot be undone, so they cannot share one), then
#           ROUNDS rounds restart each build on its own data in turn and post `ocreate`
#           (docs-bench.sh's workload: one owner's creates in the collection indexed on
#           `owner`) at 16 and 64 connections for SECONDS s:
#             MODE=builds OLD=/path/plinth NEW=/path/plinth OWNED_DOCS=10000000 bash benches/create-ab.sh
#   size    one build (PLINTH_BIN), an empty tenant against OWNED_DOCS: the empty tenant
#           twice; the big one right after seeding (same process), 60 and 120 s later,
#           and after a restart:
#             MODE=size PLINTH_BIN=target/release/plinth OWNED_DOCS=10000000 bash benches/create-ab.sh
#
# Server on core 0, load generator on core 1. One line per measurement:
#   <round or moment> <build or size> <connections> <creates/s> <p99 µs> <CPU µs/create>
# Writes benches/results/create-<mode>-<date>.txt. Seeding 10M takes ~5 min per build.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
MODE=${MODE:-builds}
OWNED_DOCS=${OWNED_DOCS:-10000000}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
OUT_DIR=${OUT_DIR:-benches/results}
PORT=18763
LOAD=${LOAD_BIN:-$(newest_bench target/release/deps load)}
[[ -x $LOAD ]] || { echo "no load generator: cargo build --release --bench load" >&2; exit 1; }
work=$(mktemp -d /tmp/create-ab.XXXX)
trap 'pkill -f "listen 127.0.0.1:$PORT" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$OUT_DIR"
out=$OUT_DIR/create-$MODE-$(date -u +%Y-%m-%dT%H%MZ).txt

# Starts a server on $2 with binary $1, makes the tenant and 100 users, seeds $3 documents.
setup() {
  PLINTH_BIN=$1 plinth_start $PORT "$2"
  plinth_tenant "$2" <<'TOML'
[owned]
read    = "auth != null && doc.owner == auth.uid"
create  = "auth != null && new.owner == auth.uid"
indexes = [["owner"]]
TOML
  plinth_users 100
  plinth_seed owned "$3" o 8 plain - "${UIDS[@]}"
  echo "${TOKENS[99]} ${UIDS[99]}" > "$2.who"
}

measure() { # tag side token uid
  local c b a
  for c in 16 64; do
    b=$(cpu_ticks "$SERVER_PID")
    taskset -c 1 "$LOAD" --connections $c --seconds "$SECONDS_PER_RUN" --label ocreate \
      --addr 127.0.0.1:$PORT --method POST --path /v1/t/bench/collections/owned/docs \
      --header "authorization: Bearer $3" --header 'content-type: application/json' \
      --body "{\"owner\":\"$4\",\"title\":\"t{n}\",\"n\":-1}" --expect 201 > "$work/run.json"
    a=$(cpu_ticks "$SERVER_PID")
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], $c, d['rps'], d['p99_us'], round(($a-$b)/$HZ*1e6/d['requests'],1), flush=True)" \
      "$work/run.json" "$1" "$2" | tee -a "$out"
  done
}

case $MODE in
builds)
  declare -A BIN=([old]=${OLD:?OLD=path of the older plinth} [new]=${NEW:?NEW=path of the newer plinth})
  for side in old new; do
    echo "seeding $OWNED_DOCS for $side (${BIN[$side]})..." >&2
    setup "${BIN[$side]}" "$work/$side" "$OWNED_DOCS"
    stop_pid "$SERVER_PID"
  done
  for r in $(seq 1 "$ROUNDS"); do
    for side in old new; do
      [[ $((r % 2)) == 0 ]] && side=$([[ $side == old ]] && echo new || echo old)
      PLINTH_BIN=${BIN[$side]} plinth_start $PORT "$work/$side"
      read -r tok uid < "$work/$side.who"
      measure "$r" "$side" "$tok" "$uid"
      stop_pid "$SERVER_PID"
    done
  done
  ;;
size)
  for n in 0 "$OWNED_DOCS"; do
    rm -rf "$work/d"
    setup "${PLINTH_BIN:-target/release/plinth}" "$work/d" "$n"
    read -r tok uid < "$work/d.who"
    measure immediately "n=$n" "$tok" "$uid"
    if [[ $n == 0 ]]; then
      measure again "n=$n" "$tok" "$uid"
    else
      sleep 60; measure +60s "n=$n" "$tok" "$uid"
      sleep 60; measure +120s "n=$n" "$tok" "$uid"
      stop_pid "$SERVER_PID"
      PLINTH_BIN=${PLINTH_BIN:-target/release/plinth} plinth_start $PORT "$work/d"
      measure restarted "n=$n" "$tok" "$uid"
    fi
    stop_pid "$SERVER_PID"
  done
  ;;
*) echo "MODE is builds or size" >&2; exit 2 ;;
esac
echo "results: $out" >&2
