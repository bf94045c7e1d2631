#!/usr/bin/env bash
# Function benchmarks through the real service and worker pool (no HTTP), release build:
#
#   bash benches/functions-bench.sh     # RUNS=3 SECONDS_PER_RUN=5 WRITERS=64
#
# Each run (a fresh in-process server on embedded SQLite; function workers = cores = 2 here) measures:
#   warm         20,000 calls of a trivial HTTP function, one after another
#   cold         200 first calls after activating another deploy version
#   hook_writes  WRITERS concurrent writers for SECONDS_PER_RUN seconds, every write
#                triggering an after hook that increments one counter; then waits until
#                the counter equals the number of writes
# Writes benches/results/functions-<date>.jsonl and prints medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
WRITERS=${WRITERS:-64}
out="benches/results/functions-$(date -u +%Y-%m-%dT%H%MZ).jsonl"
mkdir -p benches/results
cargo build --release --bench functions >&2
BIN=$(ls -t target/release/deps/functions-* | grep -v '\.d$' | head -1)
: > "$out"
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS" >&2
  "$BIN" --seconds "$SECONDS_PER_RUN" --writers "$WRITERS" \
    | python3 -c "import sys,json
for line in sys.stdin:
    d = json.loads(line); d['run'] = $r; print(json.dumps(d), flush=True)" | tee -a "$out" >&2
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, key):
    return statistics.median(r[key] for r in rows if r["label"] == label)
print(f"results: {sys.argv[1]}")
print("| measurement | p50 | p99 | other |")
print("|---|---:|---:|---|")
print(f"| warm invocation | {med('warm','p50_us')} µs | {med('warm','p99_us')} µs | {med('warm','calls_per_sec'):,.0f} calls/s, one caller |")
print(f"| cold start (first call of a new version) | {med('cold','p50_us')} µs | {med('cold','p99_us')} µs | |")
hw = [r for r in rows if r["label"] == "hook_writes"]
print(f"| write with an after hook (write latency) | {med('hook_writes','p50_us')/1000:.2f} ms | {med('hook_writes','p99_us')/1000:.2f} ms | "
      f"{med('hook_writes','writes_per_sec'):,.0f} writes/s; hooks done {med('hook_writes','hooks_done_per_sec'):,.0f}/s; "
      f"counter exact in {sum(1 for r in hw if r['exact'])}/{len(hw)} runs |")
PY
