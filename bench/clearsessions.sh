#!/usr/bin/env bash
# Benchmark of `rango clearsessions` (issue 3): the time it takes to delete 1,000,000 expired
# sessions from SQLite, and the worst latency of index requests that a server sharing the
# database file serves meanwhile. Targets: under 10 s, and no request waiting over 100 ms.
#
#   bench/clearsessions.sh [EXPIRED_ROWS] [LIVE_ROWS]      (defaults 1000000 and 10000)
#
# Needs the sqlite3 and curl command-line tools (Debian: apt-get install sqlite3 curl). All
# traffic stays on 127.0.0.1; every loop is bounded. The figures are printed and written into
# the "clearsessions" section of BENCHMARKS.md (only that section is replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

EXPIRED=${1:-1000000}
LIVE=${2:-10000}
PORT=${BENCH_PORT:-8765}
# No request loop runs longer than this, whatever happens.
MAX_SECONDS=${BENCH_MAX_SECONDS:-120}

for tool in sqlite3 curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release --quiet
RANGO=target/release/rango

WORK=$(mktemp -d)
SERVER=
PROBE=
cleanup() {
    [ -n "$PROBE" ] && kill "$PROBE" 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

DB="$WORK/bench.sqlite3"
# The same configuration the server reads, pointed at the benchmark's database.
export ROCKET_DATABASES="{rango={url=\"sqlite://$DB?mode=rwc\"}}"
export ROCKET_LOG_LEVEL=off
export ROCKET_ADDRESS=127.0.0.1
export ROCKET_PORT=$PORT

"$RANGO" migrate >/dev/null
"$RANGO" populate >/dev/null

echo "filling $DB: $EXPIRED expired and $LIVE live sessions..." >&2
# One statement per kind of row: random 32-byte digests (as SHA-256 keys are), the data the
# index stores, expiry dates spread over the last 100,000 s (expired) or the next day (live).
sqlite3 "$DB" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EXPIRED)
INSERT INTO session (key_hash, data, expires, version)
SELECT randomblob(32),
       '{"last_visit":"2025-01-01T12:00:00Z","visits":' || (i % 50 + 1) || '}',
       CAST(strftime('%s', 'now') AS INTEGER) - 60 - (i % 100000), 1
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $LIVE)
INSERT INTO session (key_hash, data, expires, version)
SELECT randomblob(32), '{"bench":"live"}', CAST(strftime('%s', 'now') AS INTEGER) + 86400 + (i % 1000), 1 FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
"$RANGO" session stats >&2

"$RANGO" serve &
SERVER=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/rango/" && break
    sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/rango/" || { echo "the server did not start" >&2; exit 1; }

# Sequential index requests without a cookie: each one creates a session, so each one needs
# SQLite's write lock, the worst case for a server sharing the file with clearsessions.
# Writes one line per request: its total time in seconds. Ten requests per curl, on one
# keep-alive connection.
INDEX=()
for _ in $(seq 10); do INDEX+=(-o /dev/null "http://127.0.0.1:$PORT/rango/"); done
probe() {
    local out=$1 stop=$2 deadline=$((SECONDS + MAX_SECONDS))
    while [ ! -e "$stop" ] && [ $SECONDS -lt $deadline ]; do
        curl -s -w '%{time_total}\n' "${INDEX[@]}" >>"$out" || true
    done
}

# Baseline: the same requests with nothing else running, for 3 seconds.
probe "$WORK/baseline" "$WORK/stop-baseline" &
PROBE=$!
sleep 3
touch "$WORK/stop-baseline"
wait "$PROBE"

probe "$WORK/during" "$WORK/stop" &
PROBE=$!
sleep 0.5
COMMAND="$RANGO clearsessions"
# Other work on the machine skews the figures; say how much there was.
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s.%N)
SUMMARY=$($COMMAND)
END=$(date +%s.%N)
touch "$WORK/stop"
wait "$PROBE"
PROBE=

REMAINING=$(sqlite3 "$DB" "SELECT COUNT(*) FROM session WHERE expires <= CAST(strftime('%s', 'now') AS INTEGER)")
KEPT=$(sqlite3 "$DB" "SELECT COUNT(*) FROM session WHERE data = '{\"bench\":\"live\"}'")

stats() { # count, median, p99, max in ms of the latencies in $1
    sort -g "$1" | awk '{ a[NR] = $1 * 1000 } END {
        printf "%d requests, median %.1f ms, p99 %.1f ms, max %.1f ms",
            NR, a[int((NR + 1) / 2)], a[int(NR * 0.99 + 0.999)], a[NR] }'
}

ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.2f", b - a }')
CORES=$(nproc)
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
RESULT=$(cat <<EOF
<!-- clearsessions:begin (written by bench/clearsessions.sh) -->
## clearsessions

\`bench/clearsessions.sh $EXPIRED $LIVE\` on $(date -u +%Y-%m-%d), $CORES cores ($CPU), release build,
load average $LOAD when the clear started.
It fills a SQLite database with $EXPIRED expired and $LIVE live sessions, starts \`rango serve\` on
127.0.0.1 on that database, sends sequential index requests (no cookie, so each one creates a
session and needs the write lock) and meanwhile runs:

    ROCKET_DATABASES='{rango={url="sqlite://…/bench.sqlite3?mode=rwc"}}' $COMMAND

| | figure |
|---|---|
| \`clearsessions\` output | $SUMMARY |
| wall time of \`clearsessions\` | $ELAPSED s (target < 10 s) |
| expired sessions left / live sessions kept | $REMAINING / $KEPT (of $LIVE) |
| index requests during the clear | $(stats "$WORK/during") (target: none > 100 ms) |
| index requests before, server alone (3 s) | $(stats "$WORK/baseline") |
<!-- clearsessions:end -->
EOF
)
echo "$RESULT"

write_section clearsessions "$RESULT" "$WORK"
