#!/usr/bin/env bash
# Remakes the admin console's screenshots in docs/console/ (shown by docs/console.md and
# the README): builds the debug binary and runs the console's browser tests on SQLite,
# which saves one screenshot per page when PLINTH_CONSOLE_SCREENSHOTS is set.
#   scripts/console-screenshots.sh        (needs Node, Chromium, tests/browser's npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin plinth
bin="${CARGO_TARGET_DIR:-target}/debug/plinth"
env -u TEST_POSTGRES_URL PLINTH_BIN="$bin" PLINTH_CONSOLE_SCREENSHOTS=docs/console \
  node --test --test-timeout=300000 tests/browser/console.test.js tests/browser/console-roles.test.js
ls -l docs/console/*.png
