#!/usr/bin/env bash
# instructions.sh — user-space instructions per Authorize, counted by
# valgrind's callgrind: repeatable on a noisy machine, unlike CPU time.
#
#   loadtest/instructions.sh [SMALL] [LARGE]      (default 5000 25000 requests)
#
# Runs the no-op reference server and callauth-gateway (embedded store, demo
# catalogue) under `valgrind --tool=callgrind`, drives each with
# callauth-loadtest's `authorize` scenario (4 connections × 128 in flight),
# once with SMALL and once with LARGE requests, and prints the marginal count
# (LARGE − SMALL) / (LARGE − SMALL requests), so start-up and set-up cancel
# out. Kernel work (TCP, epoll) is not counted. Under valgrind the CPU's SHA
# extensions are not offered, so the gateway's token check runs SHA-256 in
# software here (about 3 600 instructions per request that natively are a few
# hundred).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# die, free_port, wait_port, wait_ready, stop
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
SMALL=${1:-5000}
LARGE=${2:-25000}
[ "$LARGE" -gt "$SMALL" ] || die "LARGE must exceed SMALL"
for tool in valgrind callgrind_annotate curl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
# BIN=<dir> counts binaries built elsewhere (e.g. an earlier commit's, for a
# before/after comparison) instead of building this tree's.
if [ -z "${BIN:-}" ]; then
    cargo build --release --bins -p callauth -p callauth-loadtest >&2
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# count SYSTEM REQUESTS: total instructions of the server process. It runs in
# a command substitution (a subshell, where the EXIT trap does not fire), so
# it stops its own server on every way out.
count() {
    local system=$1 requests=$2 out="$WORK/$1-$2.callgrind"
    local grpc http skip=()
    grpc=$(free_port)
    http=$(free_port)
    if [ "$system" = gateway ]; then
        valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/callauth-gateway" --demo \
            --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" --worker-threads 1 \
            >"$WORK/$system.log" 2>&1 &
        PID=$!
        wait_ready "$http" "$PID" || { stop "$PID"; die "callauth-gateway did not start under valgrind"; }
    else
        valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/callauth-loadtest" noop-server \
            --listen "127.0.0.1:$grpc" --worker-threads 1 >"$WORK/$system.log" 2>&1 &
        PID=$!
        skip=(--skip-setup)
        wait_port "$grpc" "$PID" || { stop "$PID"; die "the no-op server did not start under valgrind"; }
    fi
    "$BIN/callauth-loadtest" run --scenario authorize --endpoint "http://127.0.0.1:$grpc" \
        --concurrency 128 --connections 4 --numbers 1000 --count "$requests" --duration 3600 \
        --warmup-seconds 0 --worker-threads 1 "${skip[@]}" >"$WORK/$system-$requests.txt" 2>&1 || {
        cat "$WORK/$system-$requests.txt" >&2
        stop "$PID"
        die "callauth-loadtest run failed against $system"
    }
    kill -INT "$PID"
    wait "$PID" 2>/dev/null || true
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

printf '%-10s %16s %16s %22s\n' system "Ir ($SMALL req)" "Ir ($LARGE req)" "instructions/request"
for system in noop gateway; do
    small=$(count "$system" "$SMALL")
    large=$(count "$system" "$LARGE")
    printf '%-10s %16s %16s %22s\n' "$system" "$small" "$large" $(((large - small) / (LARGE - SMALL)))
done
