#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite (Debian, run as root).
#
#   eval "$(bash .ci/postgres.sh start)"   # prints: export CUSTODY_TEST_PG_URL=postgresql://...
#   bash .ci/postgres.sh stop
#   bash .ci/postgres.sh status
#
# Idempotent: `start` reuses a running cluster recorded in the state file; `stop` is a
# no-op when nothing runs. fsync stays ON (the durability tests must mean something).
# Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

STATE="${CUSTODY_PG_STATE:-/tmp/custody-ci-postgres.env}"
DB="${CUSTODY_PG_DB:-custody_test}"
PGUSER_NAME="postgres"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local candidate
    for candidate in /usr/lib/postgresql/*/bin; do
        [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ] && { echo "$candidate"; return 0; }
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

ensure_binaries() {
    if ! BINDIR="$(find_bindir)"; then
        log "installing the postgresql Debian package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y postgresql >&2
        BINDIR="$(find_bindir)" || { log "initdb/pg_ctl still missing after install"; exit 1; }
    fi
}

as_pg() {
    # Run a command as the postgres OS user (initdb/postgres refuse to run as root).
    if command -v runuser >/dev/null 2>&1; then
        runuser -u "$PGUSER_NAME" -- "$@"
    else
        su "$PGUSER_NAME" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

print_url() {
    # shellcheck disable=SC1090
    . "$STATE"
    echo "export CUSTODY_TEST_PG_URL=postgresql://${PGUSER_NAME}@127.0.0.1:${PORT}/${DB}"
}

is_running() {
    [ -f "$STATE" ] || return 1
    # shellcheck disable=SC1090
    . "$STATE"
    [ -d "${DATADIR:-/nonexistent}" ] || return 1
    as_pg "$BINDIR/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1
}

start() {
    ensure_binaries
    if is_running; then
        log "already running (state in $STATE)"
        print_url
        return 0
    fi
    id "$PGUSER_NAME" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql \
        --shell /bin/bash "$PGUSER_NAME"
    local base datadir port
    base="$(mktemp -d /tmp/custody-pg.XXXXXX)"
    datadir="$base/data"
    chown "$PGUSER_NAME" "$base"
    chmod 700 "$base"
    port="$(free_port)"
    log "initdb in $datadir ($BINDIR)"
    as_pg "$BINDIR/initdb" -D "$datadir" -U "$PGUSER_NAME" --auth=trust -E UTF8 \
        --locale=C.UTF-8 >&2 2>/dev/null \
        || as_pg "$BINDIR/initdb" -D "$datadir" -U "$PGUSER_NAME" --auth=trust -E UTF8 \
            --no-locale >&2
    log "starting on 127.0.0.1:$port (fsync=on)"
    as_pg "$BINDIR/pg_ctl" -D "$datadir" -l "$base/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $base -c fsync=on \
            -c synchronous_commit=on -c max_connections=200" >&2
    as_pg "$BINDIR/psql" -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" -d postgres -v ON_ERROR_STOP=1 \
        -qc "CREATE DATABASE $DB" >&2
    cat >"$STATE" <<EOF
BINDIR=$BINDIR
BASE=$base
DATADIR=$datadir
PORT=$port
DB=$DB
EOF
    print_url
}

stop() {
    if [ ! -f "$STATE" ]; then
        log "not running"
        return 0
    fi
    # shellcheck disable=SC1090
    . "$STATE"
    if [ -d "$DATADIR" ]; then
        as_pg "$BINDIR/pg_ctl" -D "$DATADIR" -m fast -w stop >&2 || true
    fi
    case "$BASE" in
        /tmp/custody-pg.*) rm -rf -- "$BASE" ;;
    esac
    rm -f -- "$STATE"
    log "stopped"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) if is_running; then print_url; else log "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
