#!/usr/bin/env bash
# Runs the whole test suite. Without TEST_POSTGRES_URL it starts a throwaway PostgreSQL
# cluster (initdb in a temp dir, as the postgres user, on a free port) and removes it after.
# Extra arguments go to `cargo test` (e.g. a test-name filter). Without arguments it then
# lints docker/Dockerfile (scripts/docker-check.sh), checks the served OpenAPI document
# against the debug binary on both backends (scripts/openapi-check.sh: a generated
# TypeScript client compiles, schemathesis finds nothing), runs the JavaScript client's
# tests (clients/js/test) against it with Node.js, and the browser tests of the demo page
# and the admin console (tests/browser) in Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/pg.sh
trap pg_stop EXIT

if [[ -z "${TEST_POSTGRES_URL:-}" ]]; then
  if [[ -z "$(find_pg_bin || true)" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
      echo "CI=true and no PostgreSQL (initdb) found: install the postgresql package" >&2
      exit 1
    fi
    echo "PostgreSQL not found: PostgreSQL tests will be skipped (they print why)" >&2
  else
    pg_start
  fi
fi

cargo test "$@"

if [[ $# -gt 0 ]]; then
  echo "test arguments given: OpenAPI, JavaScript client and browser tests skipped" \
    "(run them with: scripts/docker-check.sh; scripts/openapi-check.sh;" \
    "node --experimental-websocket --test clients/js/test/;" \
    "node --test tests/browser/)" >&2
  exit 0
fi
# docker/Dockerfile, linted (tests/docker.rs checked the compose file and the rest).
scripts/docker-check.sh

cargo build --bin plinth
export PLINTH_BIN="${CARGO_TARGET_DIR:-target}/debug/plinth"

# The served OpenAPI document: valid, a TypeScript client generated from it compiles, and
# schemathesis finds the server keeping to it (SQLite and PostgreSQL).
scripts/openapi-check.sh

# The JavaScript client (clients/js) is tested against the real server binary, on SQLite.
node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'
}
if ! node_ok; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "CI=true and no Node.js >= 20.10 found: the JavaScript client tests need it" >&2
    exit 1
  fi
  echo "Node.js >= 20.10 not found: JavaScript client and browser tests skipped" >&2
  exit 0
fi
node --experimental-websocket --test --test-timeout=120000 clients/js/test/

# The demo page and the admin console in a real browser: Debian's chromium driven by
# playwright-core from tests/browser/node_modules (.ci/run installs both).
chromium="${CHROMIUM:-/usr/bin/chromium}"
missing=""
if [[ ! -x "$chromium" ]]; then
  missing="no browser at $chromium (apt-get install chromium, or set CHROMIUM)"
elif [[ ! -f tests/browser/node_modules/playwright-core/package.json ]]; then
  missing="playwright-core is not installed (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)"
fi
if [[ -n "$missing" ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "CI=true and $missing: the browser tests need it" >&2
    exit 1
  fi
  echo "browser tests skipped: $missing" >&2
  exit 0
fi
# CI also pages the console's data browser through 100,000 documents on both backends
# (a few minutes); locally it is opt-in with PLINTH_CONSOLE_BIG=1.
if [[ "${CI:-}" == "true" ]]; then
  export PLINTH_CONSOLE_BIG=1
fi
CHROMIUM="$chromium" node --test --test-timeout=300000 tests/browser/
