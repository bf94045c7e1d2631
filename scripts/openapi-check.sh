#!/usr/bin/env bash
# Checks the served OpenAPI document against the real server (the debug binary), on SQLite
# and on PostgreSQL:
#  1. /openapi.json validates as OpenAPI 3.1 (openapi-spec-validator), and TypeScript types
#     generated from it (openapi-typescript) compile (tsc --noEmit, tests/openapi/usage.ts);
#  2. schemathesis calls every operation as an admin (/admin routes), with a tenant's
#     service key and a user's token (tenant routes), and anonymously (all routes), and
#     checks: no 5xx, statuses, content types and bodies as documented, every error an
#     application/problem+json problem (tests/openapi/st_hooks.py).
# Uses TEST_POSTGRES_URL when set (scripts/test.sh sets it), else starts a throwaway
# cluster; PLINTH_BIN (default: the debug binary, which it does not build);
# OPENAPI_CHECK_EXAMPLES (default 10) test cases per operation and phase.
# Node.js with tests/openapi/node_modules (cd tests/openapi && npm ci) and python3 with
# venv are needed: without them it skips with the reason, and with CI=true it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh

started=$SECONDS
bin="${PLINTH_BIN:-${CARGO_TARGET_DIR:-target}/debug/plinth}"
examples="${OPENAPI_CHECK_EXAMPLES:-10}"

missing() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "CI=true and $1: the OpenAPI checks need it" >&2
    exit 1
  fi
  echo "OpenAPI checks skipped: $1" >&2
  exit 0
}

[[ -x "$bin" ]] || missing "no server binary at $bin (cargo build --bin plinth, or set PLINTH_BIN)"
command -v node >/dev/null 2>&1 || missing "no Node.js"
[[ -f tests/openapi/node_modules/openapi-typescript/package.json &&
  -f tests/openapi/node_modules/typescript/package.json ]] ||
  missing "openapi-typescript is not installed (cd tests/openapi && npm ci)"

# schemathesis and openapi-spec-validator, pinned, in a venv of their own that is
# reused while tests/openapi/requirements.txt stays the same.
venv="${PLINTH_OPENAPI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/plinth/openapi-venv}"
want="$(sha256sum tests/openapi/requirements.txt | cut -d' ' -f1)"
if [[ "$(cat "$venv/.requirements" 2>/dev/null || true)" != "$want" ]]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >/dev/null 2>&1 ||
    missing "python3 cannot make a venv (apt-get install python3-venv)"
  echo "installing schemathesis into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/openapi/requirements.txt ||
    missing "pip could not install tests/openapi/requirements.txt"
  echo "$want" >"$venv/.requirements"
fi
py="$venv/bin/python"

work="$(mktemp -d /tmp/plinth-openapi.XXXXXX)"
server=""
database=""
stop_server() {
  if [[ -n "$server" ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
  if [[ -n "$database" ]]; then
    psql -q "$TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    database=""
  fi
}
cleanup() {
  stop_server
  pg_stop
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the server on $1 (sqlite or postgres) and prepares it (tests/openapi/setup.py).
start_server() {
  local backend="$1" port storage=()
  port="$(free_port)"
  case "$backend" in
    sqlite) storage=(--data-dir "$work/sqlite") ;;
    postgres)
      database="plinth_openapi_$$"
      psql -q "$TEST_POSTGRES_URL" -c "CREATE DATABASE $database" >/dev/null
      storage=(--database-url "${TEST_POSTGRES_URL%/*}/$database")
      ;;
  esac
  # Login and sign-up limits far above what the run sends: a 429 would hide what the
  # operations do (429 itself is covered by tests/api).
  PLINTH_LOGIN_PER_IP=1000000 PLINTH_LOGIN_PER_ACCOUNT=1000000 RUST_LOG=warn \
    "$bin" "${storage[@]}" serve --listen "127.0.0.1:$port" \
    --public-url "http://127.0.0.1:$port" >"$work/$backend.out" 2>"$work/$backend.log" &
  server=$!
  url="http://127.0.0.1:$port"
  local prepared
  prepared="$("$py" tests/openapi/setup.py "$url" "$work/$backend.out")"
  eval "$prepared"
  export ST_TENANT ST_SCRATCH ST_USER_ID
}

failed=0
# One schemathesis run: $1 names it, the rest are schemathesis options. All checks but
# two that judge the API's leniency rather than its contract: it ignores unknown members,
# and a schema-valid body can still break a business rule (an email's shape, a password's
# length, a token that must exist).
st_run() {
  local name="$1"
  shift
  echo "--- schemathesis on $backend, $name" >&2
  if ! PYTHONPATH=tests/openapi SCHEMATHESIS_HOOKS=st_hooks \
    "$venv/bin/schemathesis" --no-color --config-file tests/openapi/schemathesis.toml \
    run "$url/openapi.json" --max-examples "$examples" \
    --checks all --exclude-checks negative_data_rejection,positive_data_acceptance \
    --phases examples,coverage,fuzzing --seed 1 --output-truncate true \
    --report junit --report-junit-path "$work/$backend-$name.xml" "$@" \
    >"$work/$backend-$name.txt" 2>&1; then
    failed=1
    cat "$work/$backend-$name.txt" >&2
    echo "schemathesis on $backend, $name: FAILED (server log: $work/$backend.log)" >&2
  else
    # Its warnings (e.g. operations that met only 404s) and counts.
    sed -n '/^=* \(WARNINGS\|SUMMARY\) =*$/,$p' "$work/$backend-$name.txt" | sed -n '/^=* SUMMARY/q;p' >&2
    grep -E '^  [0-9]+ generated|^=+ .* in [0-9.]+s =+$' "$work/$backend-$name.txt" >&2 || true
  fi
}

run_backend() {
  backend="$1"
  start_server "$backend"
  if [[ "$backend" == sqlite ]]; then
    local spec="$work/openapi.json"
    "$py" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
      "$url/openapi.json" >"$spec"
    "$py" -m openapi_spec_validator "$spec" >&2
    mkdir -p tests/openapi/generated
    (cd tests/openapi && node node_modules/openapi-typescript/bin/cli.js "$spec" \
      -o generated/plinth.ts --silent && node node_modules/typescript/bin/tsc -p .)
    echo "openapi-typescript: generated types compile" >&2
  fi
  # The tenant's callers first; the admin run last, as it may replace the tenant's rules.
  st_run service-key --include-path-regex '^/v1/t/' -H "Authorization: Bearer $ST_SERVICE_KEY"
  # Without logout, which would end the session of the token under test.
  st_run user --include-path-regex '^/v1/t/' --exclude-operation-id auth_logout \
    -H "Authorization: Bearer $ST_USER_TOKEN"
  # Its 401s are the point: schemathesis' warning that auth "failed" says nothing here.
  st_run anonymous --warnings off
  st_run admin --include-path-regex '^/admin/' -H "Authorization: Bearer $ST_ADMIN_TOKEN"
  stop_server
}

# Without PostgreSQL the SQLite run still counts (CI=true wants both).
no_postgres=""
if [[ -z "${TEST_POSTGRES_URL:-}" && -z "$(find_pg_bin || true)" ]]; then
  no_postgres="no PostgreSQL (initdb)"
elif ! command -v psql >/dev/null 2>&1; then
  no_postgres="no psql (apt-get install postgresql-client)"
fi
if [[ -n "$no_postgres" && "${CI:-}" == "true" ]]; then
  echo "CI=true and $no_postgres: the OpenAPI checks need it" >&2
  exit 1
fi

run_backend sqlite
if [[ -n "$no_postgres" ]]; then
  echo "OpenAPI checks on PostgreSQL skipped: $no_postgres" >&2
else
  [[ -n "${TEST_POSTGRES_URL:-}" ]] || pg_start
  run_backend postgres
fi

echo "OpenAPI checks took $((SECONDS - started)) s" >&2
if [[ "$failed" != 0 ]]; then
  # Keep the reports and logs for a look.
  keep="$(mktemp -d /tmp/plinth-openapi-failed.XXXXXX)"
  cp -r "$work/." "$keep/"
  echo "OpenAPI checks FAILED; reports and server logs in $keep" >&2
  exit 1
fi
echo "OpenAPI checks passed" >&2
