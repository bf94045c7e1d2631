#!/usr/bin/env bash
# Interleaved SMS votes runs of several release builds: bash benches/votes-ab3.sh ROUNDS
# name=DIR ... (each DIR holds that build's plinth; sms-sim comes from SIM, default
# target/release/sms-sim). Prints one line per run: round, build, the sms-sim JSON.
set -uo pipefail
rounds=$1; shift
SIM=${SIM:-target/release/sms-sim}
PORT=18731
for r in $(seq $rounds); do
  order=("$@"); (( r % 2 == 0 )) && order=($(printf '%s\n' "$@" | tac))
  for nb in "${order[@]}"; do
    name=${nb%%=*}; bin=${nb#*=}
    work=$(mktemp -d /tmp/plinth-ab.XXXXXX)
    $bin/plinth --data-dir "$work/data" serve --demo --listen 127.0.0.1:$PORT > "$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/demo/ >/dev/null && break; sleep 0.1; done
    line=$($SIM --url http://127.0.0.1:$PORT --votes 10000 --phones 1000 --concurrency 64 --watch --json 2>/dev/null | tail -n1)
    echo "$r $name $line"
    kill $server; wait $server 2>/dev/null; rm -rf "$work"
  done
done
