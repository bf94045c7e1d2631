#!/usr/bin/env bash
# Runs the kill -9 crash test (tests/crash.rs) at length: ROUNDS kill/restart rounds per
# backend (default 50), through scripts/test.sh (so PostgreSQL is there too), with the
# per-round figures printed. Extra arguments go to the test binary, e.g. `sqlite` to run one
# backend. PLINTH_CRASH_SEED=N replays a failing run's random choices.
#   ./scripts/crash-loop.sh              # 50 rounds on each backend
#   ROUNDS=200 ./scripts/crash-loop.sh sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
export PLINTH_CRASH_ROUNDS="${ROUNDS:-50}"
exec ./scripts/test.sh --test crash -- --nocapture --test-threads=1 "$@"
