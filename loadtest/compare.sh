#!/usr/bin/env bash
# compare.sh — one command, one report: callauth against its ceilings, on
# this machine, in one run.
#
#   loadtest/compare.sh [REPORT.md]            (default: loadtest/report.md)
#
# Builds the release binaries once, starts a private redis-server on a free
# port (no persistence; killed at exit), and measures with callauth-loadtest's
# `authorize` scenario (the same request for every server), each at 1×1
# (1 connection, 1 request in flight, closed loop: pure latency) and at
# saturation (closed loop, SAT_CONNECTIONS × SAT_CONCURRENCY in flight):
#
#   1.  the no-op gRPC server                     (this machine's gRPC ceiling)
#   1b. the no-op server with Nagle on            (diagnostic: what a missing TCP_NODELAY costs)
#   2.  callauth-gateway, embedded store (--demo)
#   3.  the FCALL server: one FCALL per request   (the Redis ceiling)
#   4.  callauth-gateway on that Redis
#   5.  redis-benchmark of the authorize Function alone (raw FCALL, no gRPC)
#
# The server (and Redis) run on SERVER_CPUS, the load generator on
# CLIENT_CPUS (taskset), when taskset exists and there are 2+ CPUs.
# Raw results (JSON and text of every run, logs) are kept in <REPORT>-data/.
#
# Optional environment: MEASURE_SECONDS (10), WARMUP_SECONDS (2),
# SAT_CONNECTIONS (4), SAT_CONCURRENCY (128), SERVER_CPUS (0), CLIENT_CPUS (1),
# NUMBERS (1000). ROWS=embedded runs only rows 1 and 2 (the no-op server and
# the embedded gateway: no Redis rows, no 1b) — about a third of the time, for
# side-by-side runs of the embedded store. BIN=<dir> measures the binaries
# in <dir> (e.g. an earlier commit's release build) instead of building this
# tree's; the report's "callauth <commit>" then names this tree, not them.
set -euo pipefail

COMMAND_LINE="$0${*:+ $*}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REPORT=${1:-loadtest/report.md}
DATA="${REPORT%.md}-data"
MEASURE=${MEASURE_SECONDS:-10}
WARMUP=${WARMUP_SECONDS:-2}
SAT_CONNECTIONS=${SAT_CONNECTIONS:-4}
SAT_CONCURRENCY=${SAT_CONCURRENCY:-128}
NUMBERS=${NUMBERS:-1000}
ROWS=${ROWS:-all}
case $ROWS in
    all | embedded) ;;
    *) echo "ROWS must be all or embedded, not $ROWS" >&2 && exit 2 ;;
esac
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)

say() { printf '\n== %s\n' "$*" >&2; }
# die, free_port, wait_port, wait_ready, stop
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"

for tool in cargo redis-server redis-cli redis-benchmark curl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
REDIS_VERSION=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
[ "${REDIS_VERSION%%.*}" -ge 7 ] 2>/dev/null || die "Redis 7 or later is required (Functions); found ${REDIS_VERSION:-?}"

BIN=$(release_bins "${BIN:-}")

rm -rf "$DATA"
mkdir -p "$DATA"
DATA_SHOWN=$DATA
DATA=$(cd "$DATA" && pwd)
PIDS=()
trap stop_all EXIT
trap 'exit 130' INT TERM

# CPU placement: the system under test (server, and Redis with it) on
# SERVER_CPUS, the load generator on CLIENT_CPUS.
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPUS=${SERVER_CPUS:-0}
    CLIENT_CPUS=${CLIENT_CPUS:-1}
    PIN_S=(taskset -c "$SERVER_CPUS")
    PIN_C=(taskset -c "$CLIENT_CPUS")
    SERVER_THREADS=$(taskset -c "$SERVER_CPUS" nproc)
    CLIENT_THREADS=$(taskset -c "$CLIENT_CPUS" nproc)
    PLACEMENT="server and Redis pinned to CPU(s) $SERVER_CPUS, load generator (and redis-benchmark) to CPU(s) $CLIENT_CPUS with taskset; $SERVER_THREADS server worker thread(s), $CLIENT_THREADS client worker thread(s)"
else
    PIN_S=()
    PIN_C=()
    SERVER_THREADS=0
    CLIENT_THREADS=0
    PLACEMENT="not pinned (taskset missing or a single CPU): server, Redis and load generator share all CPUs"
fi

# utime+stime of a process, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

CASES=()
# measure SYSTEM LOAD ENDPOINT [run args…]: one callauth-loadtest run.
measure() {
    local system=$1 load=$2 endpoint=$3
    shift 3
    local conc=1 conns=1
    if [ "$load" = sat ]; then
        conc=$SAT_CONCURRENCY
        conns=$SAT_CONNECTIONS
    fi
    local out="$DATA/$system-$load"
    say "$system, $load ($conns connection(s) × $conc in flight, ${WARMUP} s warm-up + ${MEASURE} s)"
    local rc=0
    ${PIN_C[@]+"${PIN_C[@]}"} "$BIN/callauth-loadtest" run --scenario authorize --endpoint "$endpoint" \
        --concurrency "$conc" --connections "$conns" --numbers "$NUMBERS" \
        --duration "$MEASURE" --warmup-seconds "$WARMUP" --worker-threads "$CLIENT_THREADS" \
        --label "$system $load" --json-out "$out.json" "$@" >"$out.txt" 2>&1 || rc=$?
    grep -E '^(Authorize|  (client|server|redis) )|WARNING|ERRORS' "$out.txt" >&2 || true
    case $rc in
        0 | 2) ;; # 2: the run saw errors; the report flags them
        *)
            cat "$out.txt" >&2
            die "callauth-loadtest run failed (exit $rc) for $system $load"
            ;;
    esac
    CASES+=(--case "$system:$load=$out.json")
}

# ---------------------------------------------------------------- Redis
REDIS_PORT=$(free_port)
${PIN_S[@]+"${PIN_S[@]}"} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$DATA/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" "$REDIS_PID" || die "redis-server did not start (see $DATA/redis.log)"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

# ------------------------------------------------------- 1. no-op server
VARIANTS=(noop noop-nagle)
[ "$ROWS" = embedded ] && VARIANTS=(noop)
for variant in "${VARIANTS[@]}"; do
    PORT=$(free_port)
    extra=()
    [ "$variant" = noop-nagle ] && extra=(--nagle)
    ${PIN_S[@]+"${PIN_S[@]}"} "$BIN/callauth-loadtest" noop-server --listen "127.0.0.1:$PORT" \
        --worker-threads "$SERVER_THREADS" ${extra[@]+"${extra[@]}"} >"$DATA/$variant.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT" "$PID" || die "the no-op server did not start (see $DATA/$variant.log)"
    for load in 1x1 sat; do
        measure "$variant" "$load" "http://127.0.0.1:$PORT" --skip-setup --watch-pid "server=$PID"
    done
    stop "$PID"
done

# ---------------------------------------- 2. callauth, embedded store
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
${PIN_S[@]+"${PIN_S[@]}"} env RUST_LOG=warn "$BIN/callauth-gateway" --demo \
    --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
    --worker-threads "$SERVER_THREADS" >"$DATA/callauth-memory.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_ready "$HTTP_PORT" "$PID" || die "callauth-gateway did not start (see $DATA/callauth-memory.log)"
for load in 1x1 sat; do
    measure callauth-memory "$load" "http://127.0.0.1:$GRPC_PORT" --watch-pid "server=$PID"
done
stop "$PID"

# The authorize Function's name (rows 3 and 5, and the notes).
LIB_VERSION=$(sed -n 's/^pub const LIBRARY_VERSION: &str = "\([^"]*\)";/\1/p' src/store/redis/functions.rs)
FN="ca_v${LIB_VERSION}_authorize"
ACCOUNT='{bench:p0}:a:+46700000000'

if [ "$ROWS" = all ]; then
# ---------------------------------------------------- 3. FCALL server
PORT=$(free_port)
${PIN_S[@]+"${PIN_S[@]}"} "$BIN/callauth-loadtest" noop-server --listen "127.0.0.1:$PORT" \
    --fcall "$REDIS_URL" --redis-prefix "cmpfcall$$" --numbers "$NUMBERS" \
    --worker-threads "$SERVER_THREADS" >"$DATA/fcall.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_port "$PORT" "$PID" || die "the FCALL server did not start (see $DATA/fcall.log)"
for load in 1x1 sat; do
    measure fcall "$load" "http://127.0.0.1:$PORT" --skip-setup \
        --watch-pid "server=$PID" --watch-pid "redis=$REDIS_PID"
done
stop "$PID"

# ------------------------------------------------ 4. callauth on Redis
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
GW_PREFIX="cmpgw$$"
${PIN_S[@]+"${PIN_S[@]}"} env RUST_LOG=warn "$BIN/callauth-gateway" --demo \
    --store "$REDIS_URL" --redis-prefix "$GW_PREFIX" \
    --prepaid-code-key "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" \
    --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
    --worker-threads "$SERVER_THREADS" >"$DATA/callauth-redis.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_ready "$HTTP_PORT" "$PID" || die "callauth-gateway on Redis did not start (see $DATA/callauth-redis.log)"
for load in 1x1 sat; do
    measure callauth-redis "$load" "http://127.0.0.1:$GRPC_PORT" \
        --watch-pid "server=$PID" --watch-pid "redis=$REDIS_PID"
done
# A real consent event of this gateway, as the payload of step 5.
CONSENT_JSON=""
for p in $(seq 0 15); do
    CONSENT_JSON=$(redis-cli -p "$REDIS_PORT" --raw XREVRANGE "{$GW_PREFIX:p$p}:events" + - COUNT 1 | sed -n 3p)
    [ -n "$CONSENT_JSON" ] && break
done
stop "$PID"

# ------------------------------------------ 5. redis-benchmark, FCALL only
redis-cli -p "$REDIS_PORT" HSET "$ACCOUNT" dir 1 ls 3 lf 100000000000000 >/dev/null
[ -n "$CONSENT_JSON" ] || die "no consent event found in the gateway's streams"
NOW_MS=$(($(date +%s) * 1000))
# The ARGV of `authorize` (src/store/redis/callauth.lua; postpaid_cmd in
# src/store/redis/calls.rs) with the gateway's default policy: now, call_id,
# number, service, merchant, terms_id, price, step, minimum, quota, max_call,
# grace_ms, retention_ms, first_time_limit, established_limit, consent
# verdict, partition, ivr_client, with_consent; then the consent event JSON,
# the VAT rate, the hold's text fields (MessagePack, as the gateway encodes
# them), the `claimed` marker (empty on a single node) and, with the fifth
# key (the call index, claimed inside the Function on a single node as the
# gateway does), the payer and the index TTL (max_call + grace + retention,
# in ms).
INDEX_ARGV=(25 "$(hold_fixed_fields n +46700000000 +46700000000 +469001001010 stjarnlinjen \
    t-469001001010-1 demo-ivr)" "" "n|0|+46700000000" $((14400 * 1000 + 120000 + 259200000)))
argv() {
    echo "$NOW_MS" "$1" +46700000000 +469001001010 stjarnlinjen t-469001001010-1 \
        2990 60 0 900 14400 120000 259200000 150000 300000 0 0 demo-ivr 1
}
# shellcheck disable=SC2046
FIRST=$(redis-cli -p "$REDIS_PORT" --raw FCALL "$FN" 5 "$ACCOUNT" '{bench:p0}:h:check' \
    '{bench:p0}:x' '{bench:p0}:events' '{bench:p0}:call:check' $(argv check) "$CONSENT_JSON" \
    "${INDEX_ARGV[@]}" | sed -n 1p)
[ "$FIRST" = 1 ] || die "the authorize Function did not grant the benchmark call (answer: $FIRST)"

# rb LOAD CLIENTS N: one redis-benchmark run; echoes its output file.
rb() {
    local out="$DATA/redis-benchmark-$1.out"
    # shellcheck disable=SC2046
    ${PIN_C[@]+"${PIN_C[@]}"} redis-benchmark -p "$REDIS_PORT" -c "$2" -n "$3" -r 2000000000 \
        FCALL "$FN" 5 "$ACCOUNT" '{bench:p0}:h:__rand_int__' '{bench:p0}:x' '{bench:p0}:events' \
        '{bench:p0}:call:__rand_int__' $(argv __rand_int__) "$CONSENT_JSON" "${INDEX_ARGV[@]}" 2>&1 | tr '\r' '\n' | grep -v 'rps=' >"$out"
    echo "$out"
}
rb_field() { awk '/throughput summary/ { print $3 }' "$1"; }
error_replies() { redis-cli -p "$REDIS_PORT" INFO stats | tr -d '\r' | awk -F: '/^total_error_replies:/ { print $2 }'; }
# Latency summary (ms): avg min p50 p95 p99 max, on the line after its header.
rb_latency() { awk '/avg +min +p50/ { getline; print; exit }' "$1"; }
# The first percentile line at or above 99.9 % (ms).
rb_p999() {
    awk '/Latency by percentile distribution/ { on = 1; next }
         on && /^$/ { exit }
         on { pct = $1; sub("%", "", pct); if (pct + 0 >= 99.9) { print $3; exit } }' "$1"
}

for load in 1x1 sat; do
    clients=1
    [ "$load" = sat ] && clients=$SAT_CONCURRENCY
    say "redis-benchmark, $load ($clients connection(s), FCALL $FN)"
    calib=$(rb "$load-calibration" "$clients" 20000)
    rate=$(rb_field "$calib")
    n=$(awk -v r="${rate:-0}" -v s="$MEASURE" 'BEGIN { n = int(r * s); if (n < 20000) n = 20000; print n }')
    before_cpu=$(cpu_ticks "$REDIS_PID")
    before_holds=$(redis-cli -p "$REDIS_PORT" HGET "$ACCOUNT" pc)
    before_errors=$(error_replies)
    out=$(rb "$load" "$clients" "$n")
    after_cpu=$(cpu_ticks "$REDIS_PID")
    after_holds=$(redis-cli -p "$REDIS_PORT" HGET "$ACCOUNT" pc)
    errors=$(($(error_replies) - before_errors))
    tp=$(rb_field "$out")
    read -r _avg _min p50 _p95 p99 max <<<"$(rb_latency "$out")"
    p999=$(rb_p999 "$out")
    granted=$((after_holds - before_holds))
    # A repeated random call id is answered as a replay (no new hold).
    replays=$((n - granted - errors))
    replays=$((replays > 0 ? replays : 0))
    awk -v tp="$tp" -v p50="$p50" -v p99="$p99" -v p999="$p999" -v max="$max" -v n="$n" \
        -v cpu=$((after_cpu - before_cpu)) -v tck="$CLK_TCK" -v err="$errors" -v rep="$replays" -v c="$clients" \
        -v fn="$FN" 'BEGIN {
        printf "{\n  \"load_text\": \"closed, %d conn × 1 in flight (-c %d)\",\n", c, c
        printf "  \"replays\": %d,\n", rep
        printf "  \"summary\": {\"operation\": \"FCALL %s\", \"requests\": %d, \"throughput_per_s\": %s,", fn, n, tp
        printf " \"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f, \"max_us\": %.0f,", p50 * 1000, p99 * 1000, p999 * 1000, max * 1000
        printf " \"errors\": %d, \"errors_total\": %d,", err, err
        printf " \"server_cpu_us_per_request\": null, \"redis_cpu_us_per_request\": %.2f,", cpu / tck * 1e6 / n
        printf " \"client_cpu_cores\": null}\n}\n"
    }' >"$DATA/redis-benchmark-$load.json"
    echo "  $n requests: $tp req/s, p50 ${p50} ms, p99 ${p99} ms, p99.9 ${p999} ms; $granted holds created, $replays replays, $errors error replies" >&2
    CASES+=(--case "redis-benchmark:$load=$DATA/redis-benchmark-$load.json")
done
fi # ROWS=all

# ----------------------------------------------------------- the report
ELAPSED=$(($(date +%s) - T0))
MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | sed -n 1p)
MEM_GB=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ')
cat >"$DATA/preamble.md" <<EOF
# callauth performance comparison

Generated by \`loadtest/compare.sh\`; raw results in \`$DATA_SHOWN/\`.

* **Command:** \`$COMMAND_LINE\` (from \`$ROOT\`), with MEASURE_SECONDS=$MEASURE WARMUP_SECONDS=$WARMUP SAT_CONNECTIONS=$SAT_CONNECTIONS SAT_CONCURRENCY=$SAT_CONCURRENCY NUMBERS=$NUMBERS ROWS=$ROWS; binaries from \`$BIN\`
* **Date:** $STARTED (took ${ELAPSED} s including the build)
* **Machine:** $(nproc) CPU(s), ${MODEL:-unknown CPU}, ${MEM_GB:-?} GB RAM, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
* **Placement:** $PLACEMENT
* **Versions:** callauth $GIT_REV ($GIT_DIRTY uncommitted file(s) in the working tree), $(rustc --version), Redis $REDIS_VERSION (private instance on port $REDIS_PORT, no persistence), redis-benchmark $(redis-benchmark --version 2>/dev/null | awk '{print $2}')
EOF
cat >"$DATA/notes.md" <<EOF

## Method

* Rows 1–4 use \`callauth-loadtest run --scenario authorize\`: every request is an Authorize with both consent steps for the service 0900-100 10 10 (29,90 kr per started minute), a unique call id, from a population of $NUMBERS numbers given a 1 000 000 kr credit-decision limit at setup (so every answer is a grant of 900 s); the reference servers (rows 1, 1b, 3) receive the same request bytes.
* **1×1**: closed loop, 1 connection, 1 request in flight — latency without queueing. **saturation**: closed loop, $SAT_CONNECTIONS HTTP/2 connections × $SAT_CONCURRENCY requests in flight (chosen from a sweep of 1×8, 2×32, 4×64, 4×128 and 8×256 against the no-op server on this machine: throughput stopped growing at about 4×128 and latency only grew beyond). In closed loop a request's latency runs from its send; open-loop runs (\`--rate\`) measure from the scheduled start instead.
* Each run: ${WARMUP} s warm-up (excluded), then ${MEASURE} s measured. Latency percentiles from an HdrHistogram in µs.
* **CPU µs/request**: utime + stime of the process from \`/proc/<pid>/stat\` over the measured window, divided by the requests answered in it; the server column excludes Redis, which has its own. At 1×1 the figure also carries the process's idle work (timers, background tasks, a wake-up per request) over few requests: compare CPU at saturation. "Redis CPU" is the private redis-server's. "other procs cores" is the CPU every other process of the machine used meanwhile (from \`/proc/stat\`): a non-zero value means the machine was not quiet.
* **Row 1b** is the no-op server with TCP_NODELAY off: what a server socket without it costs (the gateway had that bug until commit 6449db7, because tonic ignores \`Server::tcp_nodelay\` when it is given its own incoming stream). If a gateway row ever shows ~40 ms at 1×1, compare it with this row.
* **Row 3** (\`callauth-loadtest noop-server --fcall\`) does per request exactly one \`FCALL $FN\` built by \`RedisStore::authorize_command\` on accounts it set up at start — the same command the gateway sends, with the call-index claim inside it (fifth key; single node); the gateway (row 4) additionally decodes the request, authenticates, looks up the catalogue, limits concurrency and records metrics.
* **Row 5**: \`redis-benchmark -c <clients> -n <n> -r 2000000000 FCALL $FN 5 $ACCOUNT {bench:p0}:h:__rand_int__ {bench:p0}:x {bench:p0}:events {bench:p0}:call:__rand_int__ <25 ARGV>\` against an account seeded with \`HSET $ACCOUNT dir 1 ls 3 lf 100000000000000\`; ARGV 20 is a real consent event taken from row 4's stream, ARGV 21–22 the VAT rate and the hold's text fields, ARGV 23 the empty \`claimed\` marker, ARGV 24–25 the call-index payer and TTL. n is calibrated to last about ${MEASURE} s by a 20 000-request run (which also serves as its warm-up). Its "errors" are Redis error replies (\`total_error_replies\` of \`INFO stats\`); a request whose random call id repeats an earlier one is answered as a replay (the JSON counts them; at -r 2·10⁹ they are a few per million). Its latency is measured by redis-benchmark itself (closed loop, from send; p99.9 is its first percentile line at or above 99.9 %).
EOF
say "report"
server_cpus=()
[ "$SERVER_THREADS" -gt 0 ] && server_cpus=(--server-cpus "$SERVER_THREADS")
"$BIN/callauth-loadtest" report "${CASES[@]}" --preamble "$DATA/preamble.md" \
    --notes "$DATA/notes.md" --out "$REPORT" ${server_cpus[@]+"${server_cpus[@]}"}
