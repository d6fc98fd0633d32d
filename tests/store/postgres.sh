#!/bin/sh
# Start or stop a throwaway PostgreSQL for the store's contract tests (CI calls this; so can you).
#
#   tests/store/postgres.sh start DIR PORT   # prints the GOCAAS_TEST_POSTGRES_URL to export
#   tests/store/postgres.sh stop DIR PORT
#
# DIR holds the cluster (DIR/data), its socket and its log (DIR/postgres.log); it is created if missing and,
# when run as root, given to the postgres user, who runs the server (initdb refuses root). Every parent of
# DIR must be searchable by that user: /tmp/... is. The server listens on 127.0.0.1:PORT only, trusting
# local connections (a test database, nothing else). PG_BINDIR overrides where initdb and pg_ctl are found
# (default: the newest /usr/lib/postgresql/*/bin, else PATH).
set -eu

usage() { echo "usage: $0 start|stop DIR PORT" >&2; exit 2; }
[ $# -eq 3 ] || usage
action=$1 dir=$2 port=$3
case $port in ''|*[!0-9]*) usage ;; esac

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -n "$bindir" ]; then PATH=$bindir:$PATH; export PATH; fi

# Run a command as the cluster's owner: the postgres user when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- env PATH="$PATH" "$@"
    else
        "$@"
    fi
}

case $action in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner pg_ctl -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$dir/postgres.log" >&2; exit 1; }
    echo "GOCAAS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    [ -d "$dir" ] || exit 0
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner pg_ctl -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
*)
    usage
    ;;
esac
