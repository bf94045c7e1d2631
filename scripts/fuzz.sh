#!/usr/bin/env bash
# Runs the property tests of tests/fuzz.rs at length (the suite runs 256 cases of each).
# Usage: scripts/fuzz.sh [cases]   (default 20000; release build, so it is quicker)
set -euo pipefail
cd "$(dirname "$0")/.."
PLINTH_FUZZ_CASES="${1:-20000}" cargo test --release --test fuzz -- --nocapture
