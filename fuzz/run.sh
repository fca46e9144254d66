#!/usr/bin/env bash
# Runs every cargo-fuzz target of the session layer for a bounded time, one after the other,
# and prints executions and findings per target.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]        (default 60)
#   TARGETS="session_key cookie_open" fuzz/run.sh 30    (a subset)
#   SANITIZER=none fuzz/run.sh              (no AddressSanitizer: faster, no malloc limit)
#
# Installs cargo-fuzz if it is missing. On a stable toolchain it sets RUSTC_BOOTSTRAP=1, which
# cargo-fuzz's sanitizer flags (-Zsanitizer=address) need. Each target runs under libFuzzer
# with -rss_limit_mb=512 (and the same malloc limit: one allocation over 512 MB is a finding)
# and -max_len=8192, starting from fuzz/seeds/<target>/ and the local corpus fuzz/corpus/<target>/.
# A crash, leak, out-of-memory or timeout input is copied to fuzz/regressions/<target>/, which
# `cargo test --test properties` replays. Exit status: 0 when no target found anything.
set -uo pipefail

SECONDS_PER_TARGET="${1:-60}"
ALL_TARGETS="session_key record_decode cookie_open cookie_header"
TARGETS="${TARGETS:-$ALL_TARGETS}"
SANITIZER="${SANITIZER:-address}"

FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
cd "$FUZZ_DIR/.." || exit 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi
# A smaller quarantine than ASan's 256 MB, so that ASan's own memory does not reach the
# 512 MB RSS limit on a long run and pass for a finding.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=32}"
if ! rustc --version | grep -q nightly; then
    # cargo-fuzz passes -Z flags (the sanitizer); a stable rustc accepts them only so.
    export RUSTC_BOOTSTRAP=1
fi

echo "== building the fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER" || exit 2

mkdir -p "$FUZZ_DIR/logs"
summary=()
total_findings=0
for target in $TARGETS; do
    corpus="$FUZZ_DIR/corpus/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    regressions="$FUZZ_DIR/regressions/$target"
    log="$FUZZ_DIR/logs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    marker="$(mktemp)"
    echo "== $target: ${SECONDS_PER_TARGET}s"
    started=$(date +%s)
    cargo fuzz run --sanitizer "$SANITIZER" "$target" "$corpus" "$FUZZ_DIR/seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=512 -malloc_limit_mb=512 \
        -max_len=8192 -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - started ))
    # libFuzzer's own time, without a rebuild cargo-fuzz may have done first.
    ran=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | grep -o 'in [0-9]*' | grep -o '[0-9]*')

    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    corpus_size=$(find "$corpus" -type f | wc -l)

    findings=0
    while IFS= read -r -d '' input; do
        findings=$((findings + 1))
        mkdir -p "$regressions"
        cp "$input" "$regressions/"
        echo "   finding: $input -> $regressions/$(basename "$input")"
    done < <(find "$artifacts" -type f -newer "$marker" -print0)
    rm -f "$marker"
    if [ "$status" -ne 0 ] && [ "$findings" -eq 0 ]; then
        # libFuzzer failed without leaving an input (a build or start-up problem).
        findings=1
        echo "   libFuzzer exited with $status and left no input; see $log"
        tail -20 "$log"
    fi
    total_findings=$((total_findings + findings))

    line=$(printf '%-14s %6ss %12s execs %8s/s  %-22s corpus %5s  peak %4s MB  findings %s' \
        "$target" "${ran:-$elapsed}" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$corpus_size" \
        "${rss:-?}" "$findings")
    echo "   $line"
    summary+=("$line")
done

echo
echo "== summary (${SECONDS_PER_TARGET}s per target, sanitizer $SANITIZER, logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
[ "$total_findings" -eq 0 ]
