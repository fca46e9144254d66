#!/usr/bin/env bash
# Runs the crate's example as its README says (`cargo run -p rocket-server-sessions --example
# counter`) on a free loopback port, and checks that a browser-like client (curl with a cookie
# jar) sees its count rise and reset: the example a Rocket user copies must work.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p rocket-server-sessions --example counter
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
jar=$(mktemp)
ROCKET_PORT=$port ROCKET_LOG_LEVEL=off target/debug/examples/counter &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$jar"' EXIT

for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
done
get() { curl -s -L -b "$jar" -c "$jar" "http://127.0.0.1:$port$1"; }
get / >/dev/null
second=$(get /)
case "$second" in
    *"here 2 time(s)"*) ;;
    *) echo "counter example: expected a count of 2, got: $second" >&2; exit 1 ;;
esac
after_forget=$(get /forget)
case "$after_forget" in
    *"here 1 time(s)"*) ;;
    *) echo "counter example: expected a fresh count after /forget, got: $after_forget" >&2; exit 1 ;;
esac
echo "counter example: ok"
