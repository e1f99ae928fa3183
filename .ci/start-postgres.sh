#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on a private port and socket directory, for the store
# suite's Postgres run. Installs Debian's postgresql if it is missing. Prints the connection URL
# on stdout (last line). Safe to call again: an already-running server is reused.
#   usage: .ci/start-postgres.sh [datadir] [port]
set -euo pipefail
DATA="${1:-/tmp/medmesh-ci-pg}"
PORT="${2:-55432}"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bindir)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
fi
BIN="$(bindir)"

# initdb/postgres refuse to run as root; run them as the postgres user (created by the package).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$DATA"
[ "$(id -u)" = 0 ] && chown postgres: "$DATA"
if [ ! -f "$DATA/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DATA" -U medmesh --auth=trust -E UTF8 >&2
fi
taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT="$(sed -n 4p "$DATA/postmaster.pid")" # ours already runs: its port
else
  # Another server (a developer's own) may hold the port: take the next free one.
  while taken "$PORT"; do PORT=$((PORT + 1)); done
  as_pg "$BIN/pg_ctl" -D "$DATA" -w -l "$DATA/server.log" \
    -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
fi
echo "postgres://medmesh@127.0.0.1:$PORT/postgres"
