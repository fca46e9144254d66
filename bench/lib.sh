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
