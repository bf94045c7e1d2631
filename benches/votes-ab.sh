#!/usr/bin/env bash
# Interleaved A/B of the SMS votes load between two release builds (the machine's level
# drifts too much for runs minutes apart to compare). OLD and NEW are target/release
# directories holding plinth and sms-sim; e.g. build the old commit in a worktree with
# its own CARGO_TARGET_DIR.
#   OLD=/work/target-old/release NEW=target/release bash benches/votes-ab.sh
set -uo pipefail
OLD=${OLD:?directory of the old build}
NEW=${NEW:-target/release}
PORT=18731
for pair in 1 2 3; do
  for side in old new; do
    if [[ $side == old ]]; then bin=$OLD; else bin=$NEW; fi
    work=$(mktemp -d /tmp/plinth-ab.XXXXXX)
    $bin/plinth --data-dir "$work/data" serve --demo --listen 127.0.0.1:$PORT > "$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/demo/ >/dev/null && break; sleep 0.1; done
    line=$($bin/sms-sim --url http://127.0.0.1:$PORT --votes 10000 --phones 1000 --concurrency 64 --watch --json | tail -n1)
    echo "$pair $side $line"
    kill $server; wait $server 2>/dev/null; rm -rf "$work"
  done
done
