#!/usr/bin/env bash
# Interleaved A/B of the functions bench between release builds (the machine's level
# drifts too much for runs minutes apart to compare; see BENCHMARKS.md). Each build is
# the `functions` bench binary of its commit (target/release/deps/functions-*):
#   bash benches/functions-ab.sh OUT.jsonl PAIRS old=/path/functions new=/path/functions
# Each pair runs every build once, the order alternating; prints medians per build.
set -euo pipefail
out=$1; pairs=$2; shift 2
for p in $(seq "$pairs"); do
  order=("$@"); (( p % 2 == 0 )) && order=("${@:2}" "$1")
  for nb in "${order[@]}"; do
    name=${nb%%=*}; bin=${nb#*=}
    "$bin" --seconds 5 --writers 64 2>/dev/null | python3 -c "import sys,json
for l in sys.stdin:
    d=json.loads(l); d['build']='$name'; d['pair']=$p; print(json.dumps(d))" >> "$out"
  done
done
python3 - "$out" <<'PY'
import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
builds=sorted({r['build'] for r in rows})
for b in builds:
    hw=[r for r in rows if r['build']==b and r['label']=='hook_writes']
    warm=[r for r in rows if r['build']==b and r['label']=='warm']
    med=lambda xs:statistics.median(xs)
    print(b, 'n',len(hw),'hooks_done',med([r['hooks_done_per_sec'] for r in hw]),'writes/s',med([r['writes_per_sec'] for r in hw]),
      'lag',med([r['drain_lag_ms'] for r in hw]),'exact',sum(r['exact'] for r in hw),'warm/s',med([r['calls_per_sec'] for r in warm]),
      'all',[r['hooks_done_per_sec'] for r in hw])
PY
