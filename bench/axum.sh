#!/usr/bin/env bash
# Rango's about page against the same page on axum with tower-sessions' SQLite store: what
# Rango's session layer on Rocket costs next to a common Rust stack, on the read path and the
# write path, each also against its own server with no sessions at all.
#
#   bench/axum.sh [SECONDS] [ROUNDS]    (defaults 5 and 3)
#
# It builds the release binaries of Rango (unless BENCH_BIN names one) and of bench/axum (the
# about page on axum 0.8 and tower-sessions: the same templates, context and visit rule, see its
# src/main.rs), checks that the axum app counts visits, and then runs ROUNDS rounds, each of
# them all six cases, Rango's and axum's in turn (the first alternately Rango's and axum's):
#   ceiling  no sessions: Rango's `session.enabled = false`, the axum app without its session
#            layer (BENCH_SESSIONS=off); the same page, no store I/O, no cookie
#   read     one session made by curl first, its cookie sent with every request, within its
#            day's visit interval: a load, no write
#   write    no cookie: every request makes a new session and saves it
# Rango's cases are bench/run.sh's about_ceiling, about_read and about_write on SQLite
# (`BENCH_STORES=sqlite BENCH_CASES=... BENCH_BIG_ROWS=0 BENCH_WRITE=0 bench/run.sh SECONDS 16 1`,
# so the same settings: a fresh SQLite file, WAL, `sliding_expiry = true`). The axum cases are
# run here the same way: the server pinned to CPU 0 (`taskset -c 0`: one tokio worker, as
# Rocket has one), `taskset -c 1 wrk -t1 -c16 --latency` for 1 s of warm-up and then SECONDS,
# a fresh SQLite file (WAL, `synchronous = NORMAL`) per case.
#
# It prints every case of every round, then per case the median over the rounds, each side's
# read and write as a ratio of its own ceiling, and Rango ÷ axum for each case (per round,
# and the median of those). Nothing is written to BENCHMARKS.md. Rango ÷ axum on read and
# write is the whole stack's (framework, middleware, response headers) as much as the session
# layer's: the ceilings already differ. Each side's ratio to its own ceiling is the share of
# its session layer.
#
# Needs what bench/run.sh needs (wrk, curl, sqlite3, psql, redis-cli, taskset; 2 cores) and
# cargo. All traffic stays on 127.0.0.1; every run of wrk is bounded by its duration. It stops
# every server it started, whatever happens.
#
# Environment: BENCH_BIN (a Rango binary to measure instead of building this tree's),
# BENCH_PORT (Rango's port, 8766, as bench/run.sh), BENCH_AXUM_PORT (the axum app's, 8767),
# CARGO_TARGET_DIR (where both are built; default target/). BENCH_POOL (the most connections
# of the axum app's sqlx pool, 16 as Rango's `max_connections`) and BENCH_TEST_BEFORE_ACQUIRE
# (`off`: no ping each time sqlx's pool hands a connection out; sqlx pings by default) reach
# the axum app as they are, to see what its pool's settings change.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SECS=${1:-5}
ROUNDS=${2:-3}
CONNS=16
AXUM_PORT=${BENCH_AXUM_PORT:-8767}
RANGO_PORT=${BENCH_PORT:-8766}
SERVER_CPU=0
WRK_CPU=1
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

for tool in wrk curl sqlite3 taskset cargo; do
    command -v "$tool" >/dev/null || { echo "needs $tool (see the top of $0)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "needs 2 cores: one for the server, one for wrk" >&2
    exit 1
fi

WORK=$(mktemp -d)
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

echo "== building the axum app and Rango (release)" >&2
BUILD_START=$(date +%s)
cargo build --release --quiet --manifest-path bench/axum/Cargo.toml --target-dir "$TARGET"
# Copies: a build running meanwhile cannot swap a binary between two cases.
cp "$TARGET/release/rango-axum-bench" "$WORK/axum"
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet --target-dir "$TARGET"
    cp "$TARGET/release/rango" "$WORK/rango"
else
    cp "$BENCH_BIN" "$WORK/rango"
fi
echo "== built in $(($(date +%s) - BUILD_START)) s" >&2

AXUM_URL="http://127.0.0.1:$AXUM_PORT/rango/about/"
RANGO_URL="http://127.0.0.1:$RANGO_PORT/rango/about/"
for url in "$AXUM_URL" "$RANGO_URL"; do
    if curl -s -o /dev/null "$url"; then
        echo "something already answers at $url: set BENCH_AXUM_PORT or BENCH_PORT" >&2
        exit 1
    fi
done

# start_axum DB SESSIONS [VISIT_INTERVAL]: starts the axum app on the SQLite file DB, with
# its session layer (SESSIONS on) or without (off), and waits until it answers.
start_axum() {
    BENCH_PORT=$AXUM_PORT BENCH_DB=$1 BENCH_SESSIONS=$2 BENCH_VISIT_INTERVAL=${3:-86400} \
        BENCH_TEMPLATES=templates taskset -c "$SERVER_CPU" "$WORK/axum" >"$WORK/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 150); do
        # Any answer will do: a path the app does not serve (404) makes no session, so the
        # write case starts on an empty table.
        curl -s -o /dev/null "http://127.0.0.1:$AXUM_PORT/" && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    echo "the axum app did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

# The session cookie's value a fresh visit gets.
new_session() {
    curl -fs -D - -o /dev/null "$1" |
        sed -n 's/^[Ss]et-[Cc]ookie: sessionid=\([^;]*\).*/\1/p'
}

# The visit count on the page in the file $1.
visits_in() { sed -n 's/.*<span id="visits">\([0-9]*\)<\/span>.*/\1/p' "$1"; }

# Before any run: the axum app must count visits as Rango does, or its figures mean nothing.
# With a visit interval of 0 every request counts (1, 2, 3 with one cookie jar); with a day's,
# the second request finds the session (1 again) and sets no cookie (no save).
echo "== checking that the axum app counts visits" >&2
check_failed() {
    echo "the axum app does not count visits as Rango does: $1" >&2
    exit 1
}
start_axum "$WORK/check0.sqlite3" on 0
counts=
for _ in 1 2 3; do
    curl -fs -b "$WORK/jar0" -c "$WORK/jar0" -o "$WORK/page" "$AXUM_URL"
    counts="$counts$(visits_in "$WORK/page") "
done
stop_server
[ "$counts" = "1 2 3 " ] ||
    check_failed "with visit_interval 0, three requests with one cookie showed" \
        "'${counts% }', not '1 2 3'"
start_axum "$WORK/check.sqlite3" on
curl -fs -b "$WORK/jar" -c "$WORK/jar" -o "$WORK/page" "$AXUM_URL"
first=$(visits_in "$WORK/page")
curl -fs -D "$WORK/headers" -b "$WORK/jar" -c "$WORK/jar" -o "$WORK/page" "$AXUM_URL"
second=$(visits_in "$WORK/page")
grep -q sessionid "$WORK/jar" || check_failed "no sessionid cookie was set"
[ "$first $second" = "1 1" ] ||
    check_failed "within the visit interval two requests showed '$first $second', not '1 1'"
! grep -qi '^set-cookie' "$WORK/headers" ||
    check_failed "a request within the visit interval set its cookie again (a save)"
AXUM_SIZES=$(curl -fs -b "$WORK/jar" -o /dev/null -w '%{size_header} %{size_download}\n' \
    "$AXUM_URL")
stop_server
rows=$(sqlite3 "$WORK/check.sqlite3" 'SELECT count(*) FROM tower_sessions')
[ "$rows" = 1 ] || check_failed "two requests with one cookie left $rows sessions, not 1"
echo "   visit interval 0: $counts; a day: $first $second, one session, no save" >&2

# The two pages' sizes on the read path (headers and body, bytes), as a check that the two
# servers send the same page.
echo "== the read path's response sizes" >&2
ROCKET_SECRET_KEY=$(head -c 32 /dev/urandom | base64) ROCKET_LOG_LEVEL=off \
    ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$RANGO_PORT ROCKET_SESSION='{sliding_expiry=true}' \
    ROCKET_DATABASES="{rango={url=\"sqlite://$WORK/size.sqlite3?mode=rwc\"}}" \
    taskset -c "$SERVER_CPU" "$WORK/rango" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 150); do
    curl -fsI -o /dev/null "$RANGO_URL" && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
cookie=$(new_session "$RANGO_URL")
curl -fs -H "Cookie: sessionid=$cookie" -o /dev/null -w '%{size_header} %{size_download}\n' \
    "$RANGO_URL" >"$WORK/rango_sizes"
stop_server
read -r RANGO_HEAD RANGO_BODY <"$WORK/rango_sizes"
read -r AXUM_HEAD AXUM_BODY <<<"$AXUM_SIZES"
echo "   Rango: $RANGO_HEAD B of headers, $RANGO_BODY B of page;" \
    "axum: $AXUM_HEAD B, $AXUM_BODY B" >&2

# axum_case CASE: one case on the axum app, a fresh SQLite file. Appends
# "axum CASE req/s p50 p99 rss_kB errors server_us" to $WORK/results (bench/run.sh's fields,
# the server's CPU time per request last).
axum_case() {
    local case=$1 db="$WORK/axum-$1-$RANDOM.sqlite3" sessions=on
    local args=(-t1 -c"$CONNS" --latency)
    [ "$case" = ceiling ] && sessions=off
    start_axum "$db" "$sessions"
    if [ "$case" = read ]; then
        args+=(-H "Cookie: sessionid=$(new_session "$AXUM_URL")")
    fi
    taskset -c "$WRK_CPU" wrk "${args[@]}" -d1s "$AXUM_URL" >/dev/null
    local before after rss
    before=$(cpu_ticks "$SERVER")
    taskset -c "$WRK_CPU" wrk "${args[@]}" -d"${SECS}s" "$AXUM_URL" >"$WORK/wrk.out"
    after=$(cpu_ticks "$SERVER")
    rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVER/status")
    stop_server
    # The sessions the case left: one for read (no save), one per request for write.
    [ "$sessions" = on ] && sqlite3 "$db" 'SELECT count(*) FROM tower_sessions' >"$WORK/rows"
    local rps p50 p99 errors requests
    read -r rps p50 p99 errors requests < <(wrk_figures "$WORK/wrk.out")
    [ "$requests" -gt 0 ] || requests=1
    awk -v line="axum $case $rps $p50 $p99 $rss $errors" -v requests="$requests" \
        -v server=$(((after - before) * TICK_US)) \
        'BEGIN { printf "%s %.1f\n", line, server / requests }' >"$WORK/line"
    if [ "$sessions" = on ]; then
        echo "   (axum $case: the session table holds $(cat "$WORK/rows") rows after the warm-up" \
            "and $(awk '/requests in/ { print $1 }' "$WORK/wrk.out") measured requests)" >&2
    fi
    sed "s/^/$round /" "$WORK/line" >>"$WORK/results"
    cat "$WORK/line" >&2
}

# rango_cases: Rango's three cases through bench/run.sh (one round), its lines kept by their
# first five fields ("store case req/s p50 p99 ..."; later fields vary with its version).
rango_cases() {
    BENCH_BIN="$WORK/rango" BENCH_PORT=$RANGO_PORT BENCH_STORES=sqlite \
        BENCH_CASES="about_ceiling about_read about_write" BENCH_BIG_ROWS=0 BENCH_WRITE=0 \
        bash bench/run.sh "$SECS" "$CONNS" 1 >/dev/null 2>"$WORK/run.err" || {
        cat "$WORK/run.err" >&2
        echo "bench/run.sh failed" >&2
        exit 1
    }
    awk -v round="$round" '
        $1 == "sqlite" && $2 ~ /^about_(ceiling|read|write)$/ {
            case_ = substr($2, 7)
            print round, "rango", case_, $3, $4, $5, $6, $7, ($8 == "" ? "-" : $8)
        }' "$WORK/run.err" | tee -a "$WORK/results" | cut -d' ' -f2- >&2
}

: >"$WORK/results"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS" >&2
    if [ $((round % 2)) = 1 ]; then
        rango_cases
        for case in ceiling read write; do axum_case "$case"; done
    else
        for case in ceiling read write; do axum_case "$case"; done
        rango_cases
    fi
done
ELAPSED=$(($(date +%s) - START))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# $WORK/results: "round server case req/s p50 p99 rss_kB errors server_us".
rps() { awk -v r="$1" -v s="$2" -v c="$3" '$1 == r && $2 == s && $3 == c { print $4 }' \
    "$WORK/results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
median() { sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
    else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# The median over the rounds of field $3 of server $1's case $2.
field_median() { awk -v s="$1" -v c="$2" -v f="$3" '$2 == s && $3 == c { print $f }' \
    "$WORK/results" | median; }

# row LABEL FUNCTION: a table row of FUNCTION ROUND for every round, then their median.
row() {
    local label=$1 fn=$2 round values=() v
    for round in $(seq "$ROUNDS"); do
        v=$("$fn" "$round")
        values+=("$v")
    done
    printf '| %s |' "$label"
    printf ' %s |' "${values[@]}"
    printf ' %s |\n' "$(printf '%s\n' "${values[@]}" | grep -v '^-$' | median)"
}
header() {
    printf '| %s |' "$1"
    for round in $(seq "$ROUNDS"); do printf ' round %s |' "$round"; done
    printf ' median |\n|---|'
    for round in $(seq "$((ROUNDS + 1))"); do printf -- '---:|'; done
    echo
}

CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Rango's about page against axum + tower-sessions (SQLite store):"
cat <<EOF
\`bench/axum.sh $SECS $ROUNDS\` on $(date -u +%Y-%m-%d), $(nproc) cores ($CPU), release
builds, load average $LOAD_BEFORE before and $LOAD_AFTER after ($ELAPSED s in all); wrk -t1
-c$CONNS for $SECS s after 1 s of warm-up, the server on CPU $SERVER_CPU, wrk on CPU $WRK_CPU.
The read path's response: Rango $RANGO_HEAD B of headers and $RANGO_BODY B of page, axum
$AXUM_HEAD B and $AXUM_BODY B.
EOF
echo
header "req/s"
for server in rango axum; do
    for case in ceiling read write; do
        # shellcheck disable=SC2329 # called through row
        cell() { rps "$1" "$server" "$case"; }
        row "$server $case" cell
    done
done
echo
header "ratio"
for server in rango axum; do
    for case in read write; do
        # shellcheck disable=SC2329
        cell() { ratio "$(rps "$1" "$server" "$case")" "$(rps "$1" "$server" ceiling)"; }
        row "$server $case ÷ its ceiling" cell
    done
done
for case in ceiling read write; do
    # shellcheck disable=SC2329
    cell() { ratio "$(rps "$1" rango "$case")" "$(rps "$1" axum "$case")"; }
    row "**Rango ÷ axum, $case**" cell
done
echo
echo "| median over the rounds | p50 ms | p99 ms | peak RSS MB | errors | server CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|"
for server in rango axum; do
    for case in ceiling read write; do
        printf '| %s %s | %s | %s | %s | %s | %s |\n' "$server" "$case" \
            "$(field_median "$server" "$case" 5)" "$(field_median "$server" "$case" 6)" \
            "$(awk -v k="$(field_median "$server" "$case" 7)" \
                'BEGIN { printf "%.1f", k / 1024 }')" \
            "$(awk -v s="$server" -v c="$case" '$2 == s && $3 == c { e += $8 }
                END { print e + 0 }' "$WORK/results")" \
            "$(awk -v s="$server" -v c="$case" '$2 == s && $3 == c && $9 != "-" { print $9 }' \
                "$WORK/results" | median)"
    done
done
