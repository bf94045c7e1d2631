#!/usr/bin/env bash
# The structure rules of ARCHITECTURE.md, checked: no import cycle between src/'s
# top-level modules, SQL drivers only in src/store/, no source file over 600 lines and
# no function over 120 lines (tests aside). .ci/run runs it; it prints what breaks a rule.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0

python3 scripts/module-deps.py --check >/dev/null || {
  echo "import cycle between src/ modules: python3 scripts/module-deps.py shows it" >&2
  status=1
}

if grep -rnE '\b(sqlx|rusqlite)::|use (sqlx|rusqlite)\b' src --include=*.rs | grep -v '^src/store/'; then
  echo "sqlx or rusqlite used outside src/store/ (above): go through a Store method" >&2
  status=1
fi

# Unit tests kept in their own file (`*_tests.rs`, `tests.rs`) do not count.
long=$(find src -name '*.rs' ! -name '*_tests.rs' ! -name 'tests.rs' -print0 |
  xargs -0 wc -l | awk '$2 != "total" && $1 > 600 {print "  " $2 ": " $1 " lines"}')
if [[ -n "$long" ]]; then
  printf 'source files over 600 lines (one concern each, please split):\n%s\n' "$long" >&2
  status=1
fi

# clippy counts a function's lines of code (not comments or blank lines); the threshold
# is clippy.toml's too-many-lines-threshold. Library and binaries only: a test may be long.
if ! cargo clippy --quiet --lib --bins -- -D clippy::too_many_lines; then
  echo "functions over 120 lines (above): cut them into named steps" >&2
  status=1
fi
exit $status
