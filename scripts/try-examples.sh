#!/usr/bin/env bash
# Runs the crate's step-two examples as its README says (`cargo run -p rocket-server-sessions
# --example NAME --features NAME`) against this machine's services, each on a free loopback port
# (ROCKET_PORT) with a store of its own, and checks that a browser-like client (curl with a cookie
# jar) sees its count rise, and go on rising after the example is restarted.
#
# PostgreSQL and Redis come from SESSIONS_TEST_POSTGRES_URL and SESSIONS_TEST_REDIS_URL (as the
# tests); the SQLite example makes its database in the working directory, with no setting.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGOPTIONS="--client-min-messages=warning"
: "${SESSIONS_TEST_POSTGRES_URL:?set it, as for the tests}"
: "${SESSIONS_TEST_REDIS_URL:?set it, as for the tests}"
root=$PWD
bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples"

prefix="try-examples:$$:"
work=$(mktemp -d)
jar="$work/cookies"
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    psql -q "$SESSIONS_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS try_examples CASCADE" \
        >/dev/null 2>&1 || true
    redis-cli -u "$SESSIONS_TEST_REDIS_URL" --scan --pattern "$prefix*" 2>/dev/null |
        xargs -r redis-cli -u "$SESSIONS_TEST_REDIS_URL" del >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The PostgreSQL example in a schema of its own, the Redis one under a prefix of its own.
psql -q "$SESSIONS_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS try_examples CASCADE" \
    -c "CREATE SCHEMA try_examples" >/dev/null
case "$SESSIONS_TEST_POSTGRES_URL" in
    *\?*) pg_url="$SESSIONS_TEST_POSTGRES_URL&options=-csearch_path%3Dtry_examples" ;;
    *) pg_url="$SESSIONS_TEST_POSTGRES_URL?options=-csearch_path%3Dtry_examples" ;;
esac

for name in sqlite postgres redis; do
    cargo build -q -p rocket-server-sessions --example "$name" --features "$name"
done

start() {
    local name=$1 port=$2
    (
        cd "$work"
        export ROCKET_PORT=$port ROCKET_LOG_LEVEL=critical
        case "$name" in
            # No setting at all: the database is made in the working directory.
            sqlite) ;;
            postgres) export ROCKET_DATABASES="{sessions={url=\"$pg_url\"}}" ;;
            redis) export ROCKET_SESSION="{redis={url=\"$SESSIONS_TEST_REDIS_URL\",key_prefix=\"$prefix\"}}" ;;
        esac
        exec "$bin/$name"
    ) &
    server=$!
    for _ in $(seq 1 150); do
        if ! kill -0 "$server" 2>/dev/null; then
            echo "$name example: exited before serving" >&2
            exit 1
        fi
        curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$port/" -b /dev/null 2>/dev/null &&
            return
        sleep 0.1
    done
    echo "$name example: did not start on port $port" >&2
    exit 1
}

# Stops the example as a service manager does (SIGTERM): it must shut down cleanly, exit 0.
stop() {
    local name=$1
    kill "$server" 2>/dev/null || true
    if ! wait "$server"; then
        echo "$name example: did not shut down cleanly (see its output above)" >&2
        server=
        exit 1
    fi
    server=
}

expect() {
    local name=$1 port=$2 count=$3 page
    if ! page=$(curl -s --max-time 10 -b "$jar" -c "$jar" "http://127.0.0.1:$port/"); then
        echo "$name example: no answer on port $port" >&2
        exit 1
    fi
    case "$page" in
        "$count visits"*) ;;
        *) echo "$name example: expected $count visits, got: $page" >&2; exit 1 ;;
    esac
}

for name in sqlite postgres redis; do
    rm -f "$jar"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    start "$name" "$port"
    expect "$name" "$port" 1
    expect "$name" "$port" 2
    stop "$name"
    start "$name" "$port"
    expect "$name" "$port" 3
    stop "$name"
    if [ "$name" = sqlite ] && [ ! -f "$work/sessions.sqlite3" ]; then
        echo "sqlite example: no database in the working directory" >&2
        exit 1
    fi
    echo "$name example: ok (a count of 3 across a restart)"
done
