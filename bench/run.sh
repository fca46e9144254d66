#!/usr/bin/env bash
# Benchmark of the session layer (issues 6 and 14): what a session costs on the index page and on
# the light about page, per store, against the same page with the session layer off.
#
#   bench/run.sh [SECONDS] [CONNECTIONS] [ROUNDS]    (defaults 5, 16 and 2)
#
# It builds the release binary and, for each case, starts it (`target/release/rango`, which
# serves) on 127.0.0.1 with logging off and its settings in the environment, drives it with wrk
# for SECONDS after a one-second warm-up, and reads the server's peak RSS (VmHWM) before
# stopping it. The server runs on one core and wrk on the other (taskset); PostgreSQL and Redis,
# the machine's own services, are moved to wrk's core for the run (every `postgres` process and
# `redis-server`, with `taskset -ap`; their own affinity is put back after, whatever happens), so
# that a store's work never takes the server's core: left free to run anywhere, redis-server
# took turns with the server on its core and cost the Redis read path 0.82-0.95 of the ceiling
# against 0.97 with it off that core (BENCHMARKS.md, issue 23). BENCH_PIN_STORES=0 leaves them
# where they are. Beside req/s, each case gives the CPU time per
# request of the server process and of the store's own server (every `postgres` process, or
# `redis-server`), from /proc/<pid>/stat over the measured run: where a store shares the two
# cores, a gap in req/s that is the store's CPU is not the session layer's. All the cases run
# ROUNDS times, one round after the other, and each case reports its best round (other work on
# the machine only ever slows a case down; interleaved rounds give every case the same chances).
#
# Cases, for each store (SQLite, PostgreSQL, Redis, Redis in front of SQLite, sealed cookies):
#   ceiling  `session.enabled = false`: the same page and the same queries, no store I/O
#   ceiling_cookie  the ceiling, each request carrying a session cookie as the read case's do
#            (Rocket parses every Cookie header, sessions on or off); on the about page only
#   read     an existing session within its visit interval: a load, no write
#   write    no cookie: a new session saved by every request
#   update   existing sessions with `visit_interval = 0`: a load and a save per request
# each on the index page (two queries and a table: about 200 µs of server time) and, as
# about_ceiling, about_read, about_write and about_update, on the about page (no query, a light
# render: about 25 µs), where the session layer's own cost shows. On SQLite the about page's
# read and update paths also run with sessions padded to 100 B, 4 KB and 64 KB of data
# (about_read_100b, about_update_4k, ...: the sessions are made by requests, then padded by
# `sqlite3` with a string under a key the site does not use, which its saves keep; each of
# these cases in a database file of its own).
# and on each store the read path three ways (`sliding_expiry` off, on as Rango ships, and
# `save_every_request`), and on SQLite the read and write paths over a session table of
# 1,000,000 live rows. Cases that save existing sessions rotate over 4 × CONNECTIONS sessions
# made beforehand (a wrk Lua script), so that no two requests in flight save the same session:
# many concurrent saves of one session measure the merge on conflict instead.
#
# Environment: BENCH_STORES (default "sqlite postgres redis cached_db cookie"), BENCH_PORT (8766),
# BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL
# (redis://127.0.0.1:6379/0), BENCH_BIG_ROWS (1000000; 0 skips that part), BENCH_WRITE (1:
# replace the "sessions" section of BENCHMARKS.md; 0: print only), BENCH_CASES (default: all of
# the above, see CASES below), BENCH_BIN (another build of
# rango to measure instead of this tree's, e.g. to compare two versions; nothing is written to
# BENCHMARKS.md then), BENCH_PIN_STORES (1: the stores' servers on wrk's core for the run; 0:
# untouched).
#
# BENCH_COUNT=instructions counts instead of timing: each case's server runs under valgrind's
# callgrind, and the figure is the instructions the server process executes per request (all
# its threads, user space only) over SECONDS of wrk's load, counted from after the warm-up.
# Instruction counts hardly move with the machine's other load (well under 1 % between runs of
# 10 s; only through how concurrent requests happen to interleave), so they show the cost of
# the session layer without the run-to-run noise of req/s; they leave out the kernel's work
# (system calls, context switches), which req/s includes. Runs much shorter than 10 s move more. The cases default to "ceiling read read_uncached about_ceiling about_ceiling_cookie about_read",
# one round, no big table; the result goes to the "instructions" section of BENCHMARKS.md.
# BENCH_PROFILES=DIR keeps each case's callgrind output there, as STORE-CASE.callgrind, for
# callgrind_annotate. Needs valgrind (apt-get install valgrind).
#
# Needs wrk, curl, sqlite3, psql and redis-cli (Debian: apt-get install wrk curl sqlite3
# postgresql-client redis-tools). All traffic stays on 127.0.0.1; every run of wrk is bounded
# by its duration. It stops every server it started, drops its PostgreSQL schema and deletes
# its Redis keys, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SECS=${1:-5}
CONNS=${2:-16}
ROUNDS=${3:-2}
PORT=${BENCH_PORT:-8766}
STORES=${BENCH_STORES:-sqlite postgres redis cached_db cookie}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
BIG_ROWS=${BENCH_BIG_ROWS:-1000000}
WRITE=${BENCH_WRITE:-1}
PIN_STORES=${BENCH_PIN_STORES:-1}
ROTATE=$((4 * CONNS))
COUNT=${BENCH_COUNT:-time}
case $COUNT in
    time) ;;
    instructions)
        BIG_ROWS=0
        ROUNDS=1
        BENCH_CASES=${BENCH_CASES:-ceiling read read_uncached about_ceiling about_ceiling_cookie about_read}
        command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
        ;;
    *) echo "BENCH_COUNT is time or instructions" >&2; exit 1 ;;
esac

for tool in wrk curl sqlite3 psql redis-cli taskset; do
    command -v "$tool" >/dev/null || { echo "needs $tool (see the top of $0)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "needs 2 cores: one for the server, one for wrk" >&2
    exit 1
fi
SERVER_CPU=0
WRK_CPU=1

SIZES="100b 4k 64k"
CASES=${BENCH_CASES:-ceiling read write update read_plain read_every_request read_uncached
    about_ceiling about_ceiling_cookie about_read about_write about_update
    $(for size in $SIZES; do echo "about_read_$size about_update_$size"; done)}

if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet
fi

WORK=$(mktemp -d)
SERVER=
SCHEMA="rango_bench_$$"
PREFIX="rango:bench:$$:"
PG_SCHEMA_MADE=
cleanup() {
    restore_store_affinity
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    if [ -n "$PG_SCHEMA_MADE" ]; then
        psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null |
        xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The stores' servers on wrk's core for the run (see the top), put back by cleanup.
if [ "$PIN_STORES" = 1 ]; then
    pin_stores "$WRK_CPU" postgres redis-server
fi

# A copy: a build running meanwhile cannot swap the binary between two cases.
if [ -n "${BENCH_BIN:-}" ]; then
    cp "$BENCH_BIN" "$WORK/rango"
    WRITE=0
else
    cp target/release/rango "$WORK/rango"
fi
RANGO=$WORK/rango

export ROCKET_LOG_LEVEL=off
export ROCKET_ADDRESS=127.0.0.1
export ROCKET_PORT=$PORT
# The sealed-cookie store needs a key in the release profile; the others ignore it.
ROCKET_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export ROCKET_SECRET_KEY
INDEX_URL="http://127.0.0.1:$PORT/rango/"
ABOUT_URL="${INDEX_URL}about/"
URL=$INDEX_URL
if curl -s -o /dev/null "$URL"; then
    echo "something already answers on port $PORT: set BENCH_PORT" >&2
    exit 1
fi

# A wrk script that sends each request with the next of the session keys in $WORK/keys.
write_rotate_lua "$WORK/rotate.lua"
export BENCH_KEYS="$WORK/keys"

# The session cookie's value a fresh visit gets (a key, or a sealed session).
new_session() {
    curl -fs -D - -o /dev/null "$URL" |
        sed -n 's/^[Ss]et-[Cc]ookie: sessionid=\([^;]*\).*/\1/p'
}

# pad_sessions BYTES: pads every session in the SQLite file of this case to about BYTES of
# data, with a string under a key the site does not use.
pad_sessions() {
    local file=${ROCKET_DATABASES#*sqlite://}
    file=${file%%\?*}
    sqlite3 "$file" "UPDATE session SET data = json_set(data, '\$.pad',
        substr(hex(zeroblob($1)), 1, max(0, $1 - length(data) - 9)))" >/dev/null
}

# Starts the server with the settings in the environment and waits until it answers.
start_server() {
    local under=() tries=150
    if [ "$COUNT" = instructions ]; then
        under=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out")
        rm -f "$WORK"/callgrind.out*
        tries=1200
    fi
    taskset -c "$SERVER_CPU" "${under[@]}" "$RANGO" >"$WORK/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq "$tries"); do
        curl -fs -o /dev/null "$URL" && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

# The store's own server process name, for its CPU per request (none for SQLite and cookies).
store_process() {
    case $1 in
        postgres*) echo postgres ;;
        redis* | cached_db*) echo redis-server ;;
    esac
}

stop_server() {
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

# run_case STORE CASE COOKIES SESSION_SETTINGS RANGO_SETTINGS DATABASES [PAD_BYTES]
# COOKIES: none (no cookie), one (one session, -H), rotate (4 × CONNECTIONS sessions), fake
# (a cookie of a session key's length that names no session).
# PAD_BYTES (SQLite only): the sessions' data padded to about that size before the run.
# Appends "store case req/s p50 p99 rss_kB errors server_us store_us" to $WORK/results: the
# last two are the CPU time per request of the server process and of the store's server
# (PostgreSQL's processes, Redis) over the measured run, in microseconds.
run_case() {
    local store=$1 case=$2 cookies=$3 pad=${7:-0}
    export ROCKET_SESSION=$4 ROCKET_RANGO=$5 ROCKET_DATABASES=$6
    start_server
    local args=(-t1 -c"$CONNS" --latency)
    case $cookies in
        one) args+=(-H "Cookie: sessionid=$(new_session)") ;;
        fake) args+=(-H "Cookie: sessionid=00000000000000000000000000000000000000000") ;;
        rotate)
            : >"$WORK/keys"
            for _ in $(seq "$ROTATE"); do new_session >>"$WORK/keys"; done
            args+=(-s "$WORK/rotate.lua")
            ;;
    esac
    if [ "$pad" -gt 0 ]; then pad_sessions "$pad"; fi
    taskset -c "$WRK_CPU" wrk "${args[@]}" -d1s "$URL" >/dev/null
    if [ "$COUNT" = instructions ]; then
        callgrind_control -z "$SERVER" >/dev/null
    fi
    local server_before store_before server_after store_after proc
    proc=$(store_process "$store")
    server_before=$(cpu_ticks "$SERVER")
    store_before=0
    [ -n "$proc" ] && store_before=$(cpu_ticks "" "$proc")
    taskset -c "$WRK_CPU" wrk "${args[@]}" -d"${SECS}s" "$URL" >"$WORK/wrk.out"
    server_after=$(cpu_ticks "$SERVER")
    store_after=0
    [ -n "$proc" ] && store_after=$(cpu_ticks "" "$proc")
    local rss
    rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVER/status")
    if [ "$COUNT" = instructions ]; then
        callgrind_control -d "$SERVER" >/dev/null
        stop_server
        if [ -n "${BENCH_PROFILES:-}" ]; then
            cp "$WORK/callgrind.out.1" "$BENCH_PROFILES/$store-$case.callgrind"
        fi
        # Instructions per request in place of req/s.
        local total requests
        total=$(callgrind_annotate "$WORK/callgrind.out.1" |
            awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
        requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
        echo "$store $case $((total / requests)) 0 0 $rss 0 0 0" | tee -a "$WORK/results" >&2
        return
    fi
    stop_server
    local rps p50 p99 errors requests
    read -r rps p50 p99 errors requests < <(wrk_figures "$WORK/wrk.out")
    [ "$requests" -gt 0 ] || requests=1
    awk -v line="$store $case $rps $p50 $p99 $rss $errors" \
        -v server=$(((server_after - server_before) * TICK_US)) \
        -v backend=$(((store_after - store_before) * TICK_US)) -v requests="$requests" \
        'BEGIN { printf "%s %.1f %.1f\n", line, server / requests, backend / requests }' |
        tee -a "$WORK/results" >&2
}

# The SQLite URL of a fresh database file named $1.
sqlite_db() {
    echo "{rango={url=\"sqlite://$WORK/$1.sqlite3?mode=rwc\"}}"
}

# All the cases on one store. $1: store name, $2: session settings for that store (the
# backend), $3: databases setting.
run_store() {
    local store=$1 base=$2 dbs=$3
    local day='{visit_interval=86400}' always='{visit_interval=0}' case page pad
    for case in $CASES; do
        dbs=$3
        # about_X is case X on the about page; about_read_4k is about_read on 4 KB sessions.
        page=${case#about_}
        URL=$INDEX_URL
        [ "$page" != "$case" ] && URL=$ABOUT_URL
        pad=0
        case $page in
            *_100b | *_4k | *_64k)
                [ "$store" = sqlite ] || continue
                # A database of its own: padding pads every session in the file, and the
                # write cases leave hundreds of thousands.
                dbs=$(sqlite_db "$case")
                pad=${page##*_}
                pad=${pad%b}
                pad=${pad/k/*1024}
                pad=$((pad))
                page=${page%_*}
                ;;
        esac
        case $page in
            ceiling) run_case "$store" "$case" none "{${base}enabled=false}" "$day" "$dbs" ;;
            ceiling_cookie)
                run_case "$store" "$case" fake "{${base}enabled=false}" "$day" "$dbs"
                ;;
            read)
                run_case "$store" "$case" one "{${base}sliding_expiry=true}" "$day" "$dbs" "$pad"
                ;;
            write) run_case "$store" "$case" none "{${base}sliding_expiry=true}" "$day" "$dbs" ;;
            update)
                run_case "$store" "$case" rotate "{${base}sliding_expiry=true}" "$always" "$dbs" \
                    "$pad"
                ;;
            read_plain)
                run_case "$store" "$case" one "{${base}sliding_expiry=false}" "$day" "$dbs"
                ;;
            read_every_request)
                run_case "$store" "$case" rotate \
                    "{${base}sliding_expiry=true,save_every_request=true}" "$day" "$dbs"
                ;;
            read_uncached)
                # The sealed-cookie store keeps no near cache: its loads read the cookie.
                [ "$store" = cookie ] && continue
                run_case "$store" "$case" one \
                    "{${base}sliding_expiry=true,near_cache={enabled=false}}" "$day" "$dbs"
                ;;
            *) echo "unknown case $case" >&2; exit 1 ;;
        esac
    done
    URL=$INDEX_URL
}

SQLITE_DBS=$(sqlite_db sqlite)
PG_DBS="{rango={url=\"$PG_URL?options=-c%20search_path%3D$SCHEMA\"}}"
REDIS_BASE="backend=\"cache\",redis={url=\"$REDIS_URL\",key_prefix=\"$PREFIX\"},"
CACHED_BASE="backend=\"cached_db\",redis={url=\"$REDIS_URL\",key_prefix=\"${PREFIX}cached:\"},"
case " $STORES " in
    *" postgres "*)
        psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
        PG_SCHEMA_MADE=1
        ;;
esac

if [ "$BIG_ROWS" -gt 0 ]; then
    echo "== filling a SQLite session table with $BIG_ROWS live sessions" >&2
    ROCKET_DATABASES=$(sqlite_db big) "$RANGO" migrate >/dev/null
    FILL_START=$(date +%s.%N)
    # Random 32-byte digests, as SHA-256 keys are; expiry far in the future.
    sqlite3 "$WORK/big.sqlite3" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $BIG_ROWS)
INSERT INTO session (key_hash, data, expires, version)
SELECT randomblob(32), '{"last_visit":"2026-01-01T12:00:00Z","visits":' || (i % 50 + 1) || '}',
       4102444800, 1
FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
    FILL=$(awk -v a="$FILL_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    BIG_SIZE=$(du -m "$WORK/big.sqlite3" | cut -f1)
fi

: >"$WORK/results"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    for store in $STORES; do
        echo "== round $round of $ROUNDS: $store" >&2
        case $store in
            sqlite) run_store sqlite 'backend="db",' "$SQLITE_DBS" ;;
            postgres) run_store postgres 'backend="db",' "$PG_DBS" ;;
            redis) run_store redis "$REDIS_BASE" "$(sqlite_db redis)" ;;
            cached_db) run_store cached_db "$CACHED_BASE" "$(sqlite_db cached_db)" ;;
            cookie) run_store cookie 'backend="cookie",' "$(sqlite_db cookie)" ;;
            *) echo "unknown store $store" >&2; exit 1 ;;
        esac
    done
    if [ "$BIG_ROWS" -gt 0 ]; then
        echo "== round $round of $ROUNDS: sqlite with $BIG_ROWS live sessions" >&2
        run_case sqlite_big read one '{backend="db",sliding_expiry=true}' \
            '{visit_interval=86400}' "$(sqlite_db big)"
        run_case sqlite_big write none '{backend="db",sliding_expiry=true}' \
            '{visit_interval=86400}' "$(sqlite_db big)"
    fi
done
ELAPSED=$(( $(date +%s) - START ))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The tables, in Markdown.
figure() { # store case field(3 rps, 4 p50, 5 p99, 6 rss, 7 errors, 8 server CPU µs/request,
           # 9 store CPU µs/request) of the case's best round
    awk -v s="$1" -v c="$2" -v f="$3" '
        $1 == s && $2 == c && (best == "" || $3 > best) { best = $3; v = $f }
        END { print v }' "$WORK/results"
}
ratio() { # a b [decimals, 2 by default]
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%." d "f", a / b; else print "-" }'
}
verdict() { # ratio target
    awk -v r="$1" -v t="$2" 'BEGIN { if (r >= t) printf "%.2f ✓ (≥ %.2f)", r, t; else printf "**%.2f ✗** (≥ %.2f)", r, t }'
}
targets() { # store case -> target ratio or empty
    case "$1/$2" in
        sqlite/about_read | postgres/about_read | cached_db/about_read) echo 0.90 ;;
        sqlite/about_write) echo 0.50 ;;
        sqlite/about_update) echo 0.55 ;;
        redis/about_read) echo 0.95 ;;
        redis/about_write) echo 0.75 ;;
        cookie/about_write) echo 0.85 ;;
        */about_*) ;;
        */read) echo 0.90 ;;
        sqlite/write | sqlite/update) echo 0.50 ;;
        redis/write | redis/update) echo 0.60 ;;
    esac
}
MAX_RSS=0
ERRORS=0
main_table() {
    echo "| store | case | req/s | p50 ms | p99 ms | peak RSS MB | ÷ ceiling (target) | server CPU µs/req (over ceiling) | store CPU µs/req |"
    echo "|---|---|---:|---:|---:|---:|---|---:|---:|"
    local store case rps ceil r target rss errors cpu cookie
    local prefix=${1:-}
    for store in $STORES; do
        ceil=$(figure "$store" "${prefix}ceiling" 3)
        for case in "${prefix}"ceiling "${prefix}"ceiling_cookie "${prefix}"read \
            "${prefix}"write "${prefix}"update; do
            rps=$(figure "$store" "$case" 3)
            [ -n "$rps" ] || continue
            rss=$(figure "$store" "$case" 6)
            errors=$(figure "$store" "$case" 7)
            r=$(ratio "$rps" "$ceil")
            target=$(targets "$store" "$case")
            if [ "$case" = "${prefix}ceiling" ]; then
                r="1 (ceiling)"
            elif [ -n "$target" ]; then
                r=$(verdict "$r" "$target")
            fi
            # The read path over the ceiling whose requests carry a cookie too: the part of the
            # gap that is Rocket's own (it parses every Cookie header, sessions on or off).
            cookie=$(figure "$store" "${prefix}ceiling_cookie" 3)
            if [ "$case" = "${prefix}read" ] && [ -n "$cookie" ]; then
                r="$r; $(ratio "$rps" "$cookie") of the ceiling with a cookie"
            fi
            [ "$errors" -gt 0 ] && r="$r, $errors errors"
            cpu=$(figure "$store" "$case" 8)
            [ "$case" = "${prefix}ceiling" ] ||
                cpu="$cpu ($(awk -v a="$cpu" -v b="$(figure "$store" "${prefix}ceiling" 8)" \
                    'BEGIN { printf "%+.1f", a - b }'))"
            printf '| %s | %s | %s | %s | %s | %.1f | %s | %s | %s |\n' "$store" \
                "${case#"$prefix"}" "$rps" "$(figure "$store" "$case" 4)" \
                "$(figure "$store" "$case" 5)" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
                "$r" "$cpu" "$(figure "$store" "$case" 9)"
        done
    done
}
size_table() {
    echo "| about page, SQLite | req/s | p50 ms | p99 ms | ÷ ceiling | ÷ the 100 B figure |"
    echo "|---|---:|---:|---:|---|---|"
    local case size ceil small
    ceil=$(figure sqlite about_ceiling 3)
    for case in read update; do
        small=$(figure sqlite "about_${case}_100b" 3)
        for size in $SIZES; do
            [ -n "$(figure sqlite "about_${case}_$size" 3)" ] || continue
            printf '| %s, %s session | %s | %s | %s | %s | %s |\n' "$case" \
                "$(echo "$size" | sed 's/b$/ B/; s/k$/ KB/')" \
                "$(figure sqlite "about_${case}_$size" 3)" "$(figure sqlite "about_${case}_$size" 4)" \
                "$(figure sqlite "about_${case}_$size" 5)" \
                "$(ratio "$(figure sqlite "about_${case}_$size" 3)" "$ceil")" \
                "$(ratio "$(figure sqlite "about_${case}_$size" 3)" "$small")"
        done
    done
}
sliding_table() {
    echo "| store | read path | req/s | p50 ms | p99 ms | ÷ plain read |"
    echo "|---|---|---:|---:|---:|---|"
    local store case plain
    for store in $STORES; do
        plain=$(figure "$store" read_plain 3)
        for case in read_plain read read_every_request; do
            [ -n "$(figure "$store" "$case" 3)" ] || continue
            local label
            case $case in
                read_plain) label='plain (`sliding_expiry = false`)' ;;
                read) label='`sliding_expiry = true` (Rango)' ;;
                read_every_request) label='`save_every_request = true`' ;;
            esac
            printf '| %s | %s | %s | %s | %s | %s |\n' "$store" "$label" \
                "$(figure "$store" "$case" 3)" "$(figure "$store" "$case" 4)" \
                "$(figure "$store" "$case" 5)" "$(ratio "$(figure "$store" "$case" 3)" "$plain")"
        done
    done
}
near_table() {
    echo "| store | read, near cache (default) | ÷ ceiling | read, \`near_cache.enabled = false\` | ÷ ceiling |"
    echo "|---|---:|---|---:|---|"
    local store ceil
    for store in $STORES; do
        [ -n "$(figure "$store" read_uncached 3)" ] || continue
        ceil=$(figure "$store" ceiling 3)
        printf '| %s | %s | %s | %s | %s |\n' "$store" \
            "$(figure "$store" read 3)" "$(ratio "$(figure "$store" read 3)" "$ceil")" \
            "$(figure "$store" read_uncached 3)" "$(ratio "$(figure "$store" read_uncached 3)" "$ceil")"
    done
}
big_table() {
    echo "| SQLite session table | read req/s | read p99 ms | write req/s | write p99 ms |"
    echo "|---|---:|---:|---:|---:|"
    printf '| a few rows (above) | %s | %s | %s | %s |\n' \
        "$(figure sqlite read 3)" "$(figure sqlite read 5)" \
        "$(figure sqlite write 3)" "$(figure sqlite write 5)"
    printf '| %s live rows (%s MB file) | %s | %s | %s | %s |\n' "$BIG_ROWS" "$BIG_SIZE" \
        "$(figure sqlite_big read 3)" "$(figure sqlite_big read 5)" \
        "$(figure sqlite_big write 3)" "$(figure sqlite_big write 5)"
    printf '| ratio (target ≥ 0.90) | %s | | %s | |\n' \
        "$(ratio "$(figure sqlite_big read 3)" "$(figure sqlite read 3)")" \
        "$(ratio "$(figure sqlite_big write 3)" "$(figure sqlite write 3)")"
}

big_section() {
    [ "$BIG_ROWS" -gt 0 ] || return 0
    cat <<EOF2
### A session table of $BIG_ROWS live rows

\`sqlite3\` fills a fresh database with $BIG_ROWS sessions (random 32-byte \`key_hash\`,
far-future \`expires\`, one recursive CTE, $FILL s); then the read and write paths as above.

$(big_table)
EOF2
}

MAX_RSS=$(awk '$6 > m { m = $6 } END { printf "%.1f", m / 1024 }' "$WORK/results")
ERRORS=$(awk '{ e += $7 } END { print e + 0 }' "$WORK/results")
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)

# publish NAME TEXT: prints the section, and puts it in BENCHMARKS.md unless BENCH_WRITE=0.
publish() {
    echo "$2"
    if [ "$WRITE" = 1 ]; then
        write_section "$1" "$2" "$WORK"
    fi
}

if [ "$COUNT" = instructions ]; then
    instructions_table() {
        echo "| store | page | ceiling | ceiling with a cookie | read | read over the ceiling | ceiling ÷ read | write | write over the ceiling | read, \`near_cache.enabled = false\` | over the ceiling |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        local store prefix ceil cookie read write uncached
        over() { [ -n "$1" ] && echo $(($1 - ceil)) || echo -; }
        for prefix in "" about_; do
            for store in $STORES; do
                ceil=$(figure "$store" "${prefix}ceiling" 3)
                [ -n "$ceil" ] || continue
                cookie=$(figure "$store" "${prefix}ceiling_cookie" 3)
                read=$(figure "$store" "${prefix}read" 3)
                write=$(figure "$store" "${prefix}write" 3)
                uncached=$(figure "$store" "${prefix}read_uncached" 3)
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$store" \
                    "$([ -n "$prefix" ] && echo about || echo index)" "$ceil" "${cookie:--}" \
                    "${read:--}" "$(over "$read")" "$(ratio "$ceil" "${read:-0}" 3)" "${write:--}" \
                    "$(over "$write")" "${uncached:--}" "$(over "$uncached")"
            done
        done
    }
    RESULT=$(cat <<EOF
<!-- instructions:begin (written by BENCH_COUNT=instructions bench/run.sh) -->
## Instructions per request, without the noise

\`BENCH_COUNT=instructions BENCH_CASES="$(echo $CASES)" bench/run.sh $SECS $CONNS\` on $(date -u +%Y-%m-%d), $(nproc) cores
($CPU), release build: those cases and settings of the tables above, but each
server runs under \`valgrind --tool=callgrind\`, and the figure is the instructions the server
process executed (all threads, user space) divided by the requests wrk made in ${SECS} s at
$CONNS connections, counted from after the warm-up. The counts hardly move with whatever else the
machine does (well under 1 % between two runs; only through how concurrent requests happen to
interleave); the kernel's share (system calls, context switches, the loopback network) is not
in them, and valgrind's CPU has no SHA extensions: the key's SHA-256, a few hundred
instructions on the real one, counts about 3,860 here. "Ceiling with a cookie" is the ceiling
with each request carrying a session cookie, sessions off: what Rocket charges for the cookie
(it parses every \`Cookie\` header into its jar before any guard runs); "ceiling ÷ read" is
the read path's share of the ceiling in instructions, as req/s would be if time went by
instructions.

$(instructions_table)
<!-- instructions:end -->
EOF
)
    publish instructions "$RESULT"
    exit 0
fi

if [ "$PIN_STORES" = 1 ]; then
    STORES_PLACED="moved to wrk's core for the run (\`taskset -ap -c $WRK_CPU\`), so that their work
never takes the server's core"
else
    STORES_PLACED="left where they run (\`BENCH_PIN_STORES=0\`)"
fi
RESULT=$(cat <<EOF
<!-- sessions:begin (written by bench/run.sh) -->
## Sessions: the index and about pages per store, against no sessions

\`bench/run.sh $SECS $CONNS $ROUNDS\` on $(date -u +%Y-%m-%d), $(nproc) cores ($CPU), release build,
load average $LOAD_BEFORE before and $LOAD_AFTER after ($ELAPSED s in all). Each case starts
\`target/release/rango\` on 127.0.0.1 pinned to CPU $SERVER_CPU (\`taskset -c $SERVER_CPU\`, so one
Rocket worker and a pool of 4), with \`ROCKET_LOG_LEVEL=off\` and its settings in
\`ROCKET_SESSION\`, \`ROCKET_RANGO\` and \`ROCKET_DATABASES\`, and drives \`GET /rango/\` (below it,
\`GET /rango/about/\`) with
\`taskset -c $WRK_CPU wrk -t1 -c$CONNS -d${SECS}s --latency\` after a 1 s warm-up. PostgreSQL and
Redis are the machine's own services, $STORES_PLACED. Peak RSS is the server's \`VmHWM\` after the run.
Every case ran $ROUNDS times, in $ROUNDS rounds of all the cases one after the other; the
tables give each case's best round (req/s, and that round's latencies).

- ceiling: \`ROCKET_SESSION='{enabled=false}'\`: the same page and queries, no store I/O, no cookie;
- read: \`-H "Cookie: sessionid=…"\` with a session made by \`curl\` first, within its day;
- write: no cookie, so every request creates and saves a session;
- update: \`ROCKET_RANGO='{visit_interval=0}'\`, every request counts a visit and saves; the
  requests rotate over $ROTATE sessions made first (a wrk Lua script), one visitor per request
  in flight.

Stores: SQLite (\`backend="db"\`, a fresh file, WAL); PostgreSQL (\`backend="db"\`, the site and
its sessions in a schema of their own, \`?options=-c%20search_path%3D…\`, dropped after);
Redis (\`backend="cache"\`, own key prefix, keys deleted after; the site's tables in SQLite);
cached_db (Redis in front of SQLite); cookie (\`backend="cookie"\`, the session sealed into
the cookie, no server I/O).

$(main_table)

Peak RSS of any case: $MAX_RSS MB (target < 64 MB). Failed requests in all cases: $ERRORS.

### The light page: the about page per store, against no sessions

The same cases on \`GET /rango/about/\`: no query and a light render, so the session layer's
own cost shows (issue 14's targets; the write path's p99 on SQLite: ≤ 5 ms).

$(main_table about_)

### How the cost grows with the session (about page, SQLite)

The read and update paths with each session's data padded by \`sqlite3\` to about 100 B, 4 KB
and 64 KB (a string under a key the site does not use; the update path's saves keep it). The
target: a 4 KB session's read path within 10 % of a 100 B one's.

$(size_table)

### Sliding expiry on the read path

Plain and \`sliding_expiry = true\` send one cookie; \`save_every_request\` rotates over $ROTATE
sessions as the update path does (it writes on every request).

$(sliding_table)

### What the near cache buys

On every store but the sealed cookies a load of an unchanged session is answered from the
process's near cache (\`rocket-server-sessions/src/stores/near/\`), watched through \`LISTEN\`,
Redis's client tracking or, on SQLite, the file's \`data_version\` polled by its writer; with
\`near_cache.enabled = false\` every load goes to the store (on SQLite, a read transaction).

$(near_table)

$(big_section)
<!-- sessions:end -->
EOF
)
publish sessions "$RESULT"
