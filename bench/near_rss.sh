#!/usr/bin/env bash
# The server's memory with its near cache full (issue 23: peak RSS under 64 MB with 100,000
# cached sessions), on the default store, SQLite.
#
#   bench/near_rss.sh [N]    (default 100000)
#
# It starts the release binary (or BENCH_BIN) on a fresh SQLite file with
# `near_cache.size = N`, makes sessions with requests that carry no cookie (wrk for 2 × N / 10,000
# seconds, its Lua keeping each new session's key), then loads N of them in turn (wrk with a
# cookie each, two passes over them, so every one is loaded and kept), and prints the server's
# RSS after start, after the sessions were made, and its peak (VmHWM) once they were all loaded.
# Needs wrk and curl. Prints only; BENCHMARKS.md quotes its output.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

N=${1:-100000}
PORT=${BENCH_PORT:-8767}
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet
fi
WORK=$(mktemp -d)
cp "${BENCH_BIN:-target/release/rango}" "$WORK/rango"
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ROCKET_LOG_LEVEL=off ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$PORT
export ROCKET_DATABASES="{rango={url=\"sqlite://$WORK/rss.sqlite3?mode=rwc\"}}"
# BENCH_NEAR_OFF=1: the same run with the near cache off, for the baseline.
export ROCKET_SESSION="{near_cache={size=$N${BENCH_NEAR_OFF:+,enabled=false}}}"
URL="http://127.0.0.1:$PORT/rango/about/"
if curl -s -o /dev/null "$URL"; then
    echo "something already answers on port $PORT: set BENCH_PORT" >&2
    exit 1
fi
"$WORK/rango" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 150); do
    curl -fs -o /dev/null "$URL" && break
    sleep 0.1
done
kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SERVER/status"; }
started=$(kb VmRSS)

# Each response's new session key, one per line.
cat >"$WORK/collect.lua" <<'LUA'
local out = io.open(os.getenv("KEYS_OUT"), "w")
response = function(status, headers, body)
    local set = headers["set-cookie"] or headers["Set-Cookie"]
    local key = set and set:match("^sessionid=([a-z0-9]+);")
    if key then out:write(key, "\n") end
end
done = function() out:close() end
LUA
write_rotate_lua "$WORK/rotate.lua"

make_secs=$((2 * N / 10000 + 2))
while :; do
    KEYS_OUT="$WORK/made" wrk -t1 -c16 -d"${make_secs}s" -s "$WORK/collect.lua" "$URL" >/dev/null
    cat "$WORK/made" >>"$WORK/all"
    [ "$(wc -l <"$WORK/all")" -ge "$N" ] && break
done
head -n "$N" "$WORK/all" >"$WORK/keys"
made=$(kb VmRSS)
rows=$(wc -l <"$WORK/all")

# Two passes over the N keys at least: every session loaded once (a miss, then kept) and
# served again from the cache.
passes=0
while [ "$passes" -lt 2 ]; do
    BENCH_KEYS="$WORK/keys" wrk -t1 -c16 -d10s -s "$WORK/rotate.lua" "$URL" >"$WORK/wrk.out"
    requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
    passes=$((passes + requests / N))
done
peak=$(kb VmHWM)
now=$(kb VmRSS)

echo "near cache of $N sessions (near_cache.size = $N${BENCH_NEAR_OFF:+, enabled = false}), SQLite, $rows sessions stored:"
echo "  RSS after start:            $((started / 1024)) MB"
echo "  RSS after the sessions were made: $((made / 1024)) MB"
echo "  RSS after $passes passes over $N of them: $((now / 1024)) MB; peak (VmHWM) $((peak / 1024)) MB"
