#!/usr/bin/env bash
# overload.sh — issue 10's two measurements, on this machine, with the
# release binaries (build them first: see loadtest/README.md):
#
#   1. open-loop Authorize far above capacity (RATE, default 25 000/s) against
#      the gateway on a private redis-server: goodput, p99 of the admitted
#      requests, holds left in Redis beyond the allowed answers (holds for
#      requests the client saw fail), shed counters, readiness changes, RSS
#      before and after;
#   2. STREAMS (default 20 000) Usage.Report streams that never send: how
#      many the gateway accepted and refused, RSS while they are open, and
#      when the gateway closed them;
#   3. SIGTERM with 1 000 idle streams open: how long until the gateway exits.
#
# GATEWAY_ARGS adds flags to the gateway (e.g. "--max-concurrent-requests
# 4096" for the old default). Nothing is asserted; results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh

RATE=${RATE:-25000}
DURATION=${DURATION:-20}
STREAMS=${STREAMS:-20000}
IDLE_SECONDS=${IDLE_SECONDS:-60}
OUT=${OUT:-target/overload}
BIN=${CARGO_TARGET_DIR:-target}/release
GATEWAY_ARGS=${GATEWAY_ARGS:-}
mkdir -p "$OUT"
PIDS=()
trap 'for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done' EXIT

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$OUT/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" "$REDIS_PID" || die "redis-server did not start"

start_gateway() {
    GRPC_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    # shellcheck disable=SC2086
    env RUST_LOG=warn "$BIN/callauth-gateway" --demo \
        --store "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$1" \
        --prepaid-code-key "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" \
        --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
        --usage-stream-idle-seconds "$IDLE_SECONDS" \
        $GATEWAY_ARGS >"$OUT/gateway-$1.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_ready "$HTTP_PORT" "$GW_PID" || die "the gateway did not start (see $OUT/gateway-$1.log)"
}

# ------------------------------------------------------------ 1. overload
start_gateway ov
RSS_BEFORE=$(rss_kib "$GW_PID")
set +e
"$BIN/callauth-loadtest" run --scenario authorize --rate "$RATE" --connections 4 \
    --duration "$DURATION" --warmup-seconds 2 --numbers 20000 \
    --endpoint "http://127.0.0.1:$GRPC_PORT" --watch-pid "server=$GW_PID" \
    --watch-pid "redis=$REDIS_PID" --json-out "$OUT/overload.json" >"$OUT/overload.txt" 2>&1
echo "loadtest run exit status $? (2: some requests failed, expected under overload)"
set -e
sleep 2 # any command still in Redis has run
RSS_AFTER=$(rss_kib "$GW_PID")
HOLDS=0
for p in $(seq 0 15); do
    # The pending holds of the partition (the expiry index's count).
    PENDING=$(redis-cli -p "$REDIS_PORT" GET "{ov:p$p}:xn")
    HOLDS=$((HOLDS + ${PENDING:-0}))
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" >"$OUT/overload-metrics.txt"
cat "$OUT/overload.txt"
echo "holds in Redis: $HOLDS (compare with the ALLOWED answers above, warm-up included)"
echo "gateway RSS: before $RSS_BEFORE KiB, after $RSS_AFTER KiB"
grep -E '^callauth_shed_total|^callauth_store_ready|^callauth_grpc_requests_total\{method="Authorize"' "$OUT/overload-metrics.txt" | grep -v ' 0$' || true
echo "readiness changes logged: $(grep -c 'not ready' "$OUT/gateway-ov.log" || true)"
stop "$GW_PID"

# -------------------------------------------------------- 2. idle streams
start_gateway idle
RSS_BEFORE=$(rss_kib "$GW_PID")
"$BIN/callauth-loadtest" idle-streams --streams "$STREAMS" --connections 20 \
    --endpoint "http://127.0.0.1:$GRPC_PORT" --wait-seconds $((IDLE_SECONDS * 3)) \
    >"$OUT/idle.json" 2>"$OUT/idle.txt" &
LT=$!
sleep 10
RSS_OPEN=$(rss_kib "$GW_PID")
OPEN_METRIC=$(curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | grep '^callauth_usage_streams_open' || true)
wait "$LT"
RSS_CLOSED=$(rss_kib "$GW_PID")
cat "$OUT/idle.txt" "$OUT/idle.json"
echo "gateway RSS: before $RSS_BEFORE KiB, streams open (10 s in) $RSS_OPEN KiB, after they closed $RSS_CLOSED KiB"
echo "$OPEN_METRIC (10 s in)"
curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^callauth_usage_streams|^callauth_shed_total' | grep -v ' 0$' || true
stop "$GW_PID"

# ------------------------------------- 3. SIGTERM with idle streams open
start_gateway term
"$BIN/callauth-loadtest" idle-streams --streams 1000 --connections 2 \
    --endpoint "http://127.0.0.1:$GRPC_PORT" --wait-seconds 120 \
    >"$OUT/term.json" 2>"$OUT/term.txt" &
LT=$!
sleep 5
T0=$(date +%s.%N)
kill -TERM "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
echo "SIGTERM with idle streams open: the gateway exited after $(echo "$(date +%s.%N) - $T0" | bc) s (grace 10 s)"
wait "$LT" || true
cat "$OUT/term.json"
