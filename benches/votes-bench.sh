#!/usr/bin/env bash
# End-to-end SMS votes: webhook -> sms function -> vote -> tally hook -> tally -> socket.
#
#   bash benches/votes-bench.sh      # RUNS=3 VOTES=10000 PHONES=1000 CONCURRENCY=64
#
# Each run: a fresh `plinth serve --demo` (release, embedded SQLite) and `sms-sim --watch`
# sending signed Twilio webhooks while it watches the tally over the realtime WebSocket as
# the demo page does. Both share the machine's cores (the simulator needs ~10% of one);
# PIN=1 pins the server to core 0 and the simulator to core 1 instead. Reported: votes/s,
# webhook answer latency, the delay from a webhook's answer to the socket receiving a
# tally that includes the vote (p50/p99), and whether the tally ended exact.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
VOTES=${VOTES:-10000}
PHONES=${PHONES:-1000}
CONCURRENCY=${CONCURRENCY:-64}
PIN=${PIN:-0}
if [[ $PIN == 1 ]]; then server_cpus=0 sim_cpus=1; else server_cpus=0-$(($(nproc) - 1)) sim_cpus=$server_cpus; fi
PORT=18721
out="benches/results/votes-$(date -u +%Y-%m-%dT%H%M%SZ).jsonl"
mkdir -p benches/results
cargo build --release --bin plinth --bin sms-sim >&2
work=$(mktemp -d /tmp/plinth-votes.XXXXXX)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
: > "$out"
for r in $(seq "$RUNS"); do
  rm -rf "$work/data"
  taskset -c "$server_cpus" target/release/plinth --data-dir "$work/data" serve --demo --listen 127.0.0.1:$PORT \
    > "$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/demo/ >/dev/null && break; sleep 0.1; done
  echo "run $r/$RUNS" >&2
  taskset -c "$sim_cpus" target/release/sms-sim --url http://127.0.0.1:$PORT --votes "$VOTES" --phones "$PHONES" \
    --concurrency "$CONCURRENCY" --watch --json \
    | python3 -c "import sys,json
for line in sys.stdin:
    d = json.loads(line); d['run'] = $r; d['pinned'] = $PIN == 1; print(json.dumps(d), flush=True)" | tee -a "$out" >&2
  kill "$server"; wait "$server" 2>/dev/null || true; server=
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
m = lambda k: statistics.median(r[k] for r in rows)
print(f"results: {sys.argv[1]} ({len(rows)} runs)")
print("| votes/s | answer p50 / p99 ms | webhook answer -> socket p50 / p99 ms | tally exact |")
print("|---:|---:|---:|---|")
print(f"| {m('votes_per_sec'):,.0f} | {m('answer_p50_ms'):.1f} / {m('answer_p99_ms'):.1f} | "
      f"{m('socket_delay_p50_ms'):.1f} / {m('socket_delay_p99_ms'):.1f} | {sum(r['exact'] for r in rows)}/{len(rows)} runs |")
PY
