# Shared by the benchmark scripts in this folder; sourced, not run.

# write_section NAME TEXT WORKDIR: puts TEXT, which starts with "<!-- NAME:begin" and ends with
# "<!-- NAME:end -->", into BENCHMARKS.md in place of the section of that name (or at the end,
# when there is none yet). The other sections are left as they are.
write_section() {
    local name=$1 text=$2 work=$3
    [ -e BENCHMARKS.md ] || printf '# Benchmarks\n\n' >BENCHMARKS.md
    if grep -q "<!-- $name:begin" BENCHMARKS.md; then
        awk -v result="$text" -v begin="<!-- $name:begin" -v end="<!-- $name:end" '
            index($0, begin) == 1 { print result; skip = 1; next }
            index($0, end) == 1 { skip = 0; next }
            !skip { print }' BENCHMARKS.md >"$work/BENCHMARKS.md"
        cp "$work/BENCHMARKS.md" BENCHMARKS.md
    else
        printf '\n%s\n' "$text" >>BENCHMARKS.md
    fi
}

# write_rotate_lua FILE: a wrk script that sends each request with the next of the session keys
# in the file $BENCH_KEYS (one per line), in turn.
write_rotate_lua() {
    cat >"$1" <<'LUA'
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do keys[#keys + 1] = line end
local i = 0
request = function()
    i = i % #keys + 1
    return wrk.format(nil, nil, { ["Cookie"] = "sessionid=" .. keys[i] })
end
LUA
}

# wrk_figures FILE: from wrk's output (with --latency) in FILE, "req/s p50_ms p99_ms errors
# requests" (errors: non-2xx answers and socket errors).
wrk_figures() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec/ { rps = $2 }
        /requests in/ { requests = $1 }
        /Non-2xx/ { errors += $5 }
        /Socket errors/ { errors += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.2f %.2f %d %d\n", rps, p50, p99, errors, requests }
    ' "$1"
}

# cpu_ticks PIDS [NAME]: the CPU time (user and system, clock ticks of TICK_US microseconds)
# used so far by the processes PIDS, or by every process named NAME when PIDS is empty (0 if
# none runs).
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() {
    local pids=$1
    [ -n "$pids" ] || pids=$(pgrep -x "$2" || true)
    local pid total=0 t
    for pid in $pids; do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + t))
    done
    echo "$total"
}

# pin_stores CPU NAME...: moves every thread of every process named NAME to CPU, remembering
# each name's affinity first (that of its oldest process: PostgreSQL's postmaster, whose new
# backends inherit it) in STORE_AFFINITY; restore_store_affinity puts it back on every process
# of that name, those started meanwhile too. Needs the right to change those processes'
# affinity (root, or their owner); without it the run goes on unpinned and says so.
STORE_AFFINITY=()
pin_stores() {
    local cpu=$1 name pid mask
    shift
    for name in "$@"; do
        pid=$(pgrep -o -x "$name" || true)
        [ -n "$pid" ] || continue
        mask=$(taskset -p "$pid" | awk '{ print $NF }')
        STORE_AFFINITY+=("$name=$mask")
        for pid in $(pgrep -x "$name"); do
            taskset -ap -c "$cpu" "$pid" >/dev/null 2>&1 ||
                echo "could not pin $name ($pid) to CPU $cpu: it stays where it is" >&2
        done
    done
}
restore_store_affinity() {
    local entry pid
    for entry in ${STORE_AFFINITY[@]+"${STORE_AFFINITY[@]}"}; do
        for pid in $(pgrep -x "${entry%%=*}" || true); do
            taskset -ap "${entry#*=}" "$pid" >/dev/null 2>&1 || true
        done
    done
    STORE_AFFINITY=()
}
