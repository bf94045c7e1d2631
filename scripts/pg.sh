# Sourced by scripts/test.sh and scripts/openapi-check.sh: a throwaway PostgreSQL cluster
# (initdb in a temp dir, as the postgres user when root, on a free port). find_pg_bin says
# whether there is an initdb; pg_start starts the cluster and exports TEST_POSTGRES_URL;
# pg_stop (from an EXIT trap) removes it again. PG_EXTRA_OPTS adds server options (e.g.
# "-c shared_preload_libraries=pg_stat_statements" for the benchmarks' PG_STATS).

pg_dir=""
pg_bin=""

find_pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_start() {
  pg_bin="$(find_pg_bin)"
  pg_dir="$(mktemp -d /tmp/plinth-pg.XXXXXX)"
  chown postgres "$pg_dir" 2>/dev/null || true
  local port
  port="$(free_port)"
  as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust --no-sync >/dev/null
  # fsync off etc.: a throwaway test cluster, never a production setting.
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start -o \
    "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 ${PG_EXTRA_OPTS:-}" >/dev/null
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "throwaway PostgreSQL on port $port" >&2
}

pg_stop() {
  if [[ -n "$pg_dir" && -d "$pg_dir" ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
