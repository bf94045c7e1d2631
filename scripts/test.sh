#!/usr/bin/env bash
# Runs the whole test suite. Without TEST_POSTGRES_URL it starts a throwaway PostgreSQL
# cluster (initdb in a temp dir, as the postgres user, on a free port) and removes it after.
# Extra arguments go to `cargo test` (e.g. a test-name filter). Without arguments it then
# runs the JavaScript client's tests (clients/js/test) against the debug binary with Node.js,
# and the demo page's browser tests (tests/browser) in Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_dir=""
cleanup() {
  if [[ -n "$pg_dir" && -d "$pg_dir" ]]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT

find_pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

if [[ -z "${TEST_POSTGRES_URL:-}" ]]; then
  pg_bin="$(find_pg_bin || true)"
  if [[ -z "$pg_bin" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
      echo "CI=true and no PostgreSQL (initdb) found: install the postgresql package" >&2
      exit 1
    fi
    echo "PostgreSQL not found: PostgreSQL tests will be skipped (they print why)" >&2
  else
    pg_dir="$(mktemp -d /tmp/plinth-pg.XXXXXX)"
    chown postgres "$pg_dir" 2>/dev/null || true
    port="$(free_port)"
    as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust --no-sync >/dev/null
    # fsync off etc.: a throwaway test cluster, never a production setting.
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start -o \
      "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null
    export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "throwaway PostgreSQL on port $port" >&2
  fi
fi

cargo test "$@"

# The JavaScript client (clients/js) is tested against the real server binary, on SQLite.
if [[ $# -gt 0 ]]; then
  echo "test arguments given: JavaScript client and browser tests skipped" \
    "(run them with: node --experimental-websocket --test clients/js/test/;" \
    "node --test tests/browser/)" >&2
  exit 0
fi
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
cargo build --bin plinth
export PLINTH_BIN="${CARGO_TARGET_DIR:-target}/debug/plinth"
node --experimental-websocket --test --test-timeout=120000 clients/js/test/

# The demo page (plinth serve --demo) in a real browser: Debian's chromium driven by
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
CHROMIUM="$chromium" node --test --test-timeout=300000 tests/browser/
