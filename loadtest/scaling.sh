#!/usr/bin/env bash
# scaling.sh — how the Redis path scales (issue 13.4): callauth-gateway on
# Redis with 1 and 2 Tokio worker threads, on one Redis node and on a local
# 3-master Redis Cluster, with the CPU every process used, so a reader can
# size a deployment (gateway cores and Redis shard cores per 10 000 calls/s,
# gateways per shard).
#
#   loadtest/scaling.sh [REPORT.md]            (default: loadtest/scaling.md)
#
# Starts private redis-servers on free ports (no persistence; killed at
# exit): one plain node, and three `--cluster-enabled yes` nodes joined with
# `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`. For every
# run (RUNS), every topology (TOPOLOGIES) and every thread count (THREADS),
# in that order (interleaved, so a noisy minute hits every configuration
# alike): a fresh gateway (`--demo --store redis://…` or
# `redis+cluster://a,b,c`, `--worker-threads N`), callauth-loadtest's
# `authorize` scenario with its usual setup through the admin API (the
# population and limits), closed loop at saturation (CONNECTIONS ×
# CONCURRENCY in flight; or open loop at RATE), watching the gateway, each
# redis-server and the generator itself (utime + stime from /proc/<pid>/stat
# over the measured window, and the share of the gateway's CPU its Redis I/O
# thread used over the case); then the gateway is stopped and every node
# flushed (FLUSHALL; the Function library stays loaded). Each run starts
# with a control case: callauth-loadtest's no-op gRPC server (1 worker
# thread) under the same load — no Redis, no work — whose CPU per request,
# compared with its value on a quiet machine, shows how much the machine's
# load inflated every figure of that run.
#
# Optional environment (defaults in brackets):
#   DURATION [10]        measured seconds per case
#   WARMUP_SECONDS [2]   warm-up seconds per case (excluded)
#   RUNS [3]             repetitions of the whole matrix
#   THREADS ["1 2"]      gateway --worker-threads values
#   TOPOLOGIES ["single cluster"]
#   CONCURRENCY [128]    requests in flight (closed loop)
#   CONNECTIONS [4]      HTTP/2 connections of the generator
#   SCENARIO [authorize] or mix: whole calls (consent, codes, extensions,
#                        releases, usage; money check), CPU then per call;
#                        the gateway gets --usage-clock-skew-seconds 14400 and
#                        there is no control case (the no-op server answers
#                        Authorize only)
#   RATE []              open loop at this many Authorize/s (calls/s) instead of closed loop
#   CONTROL [1]          0: skip the no-op server control case
#   CLIENT_THREADS [1]   the generator's Tokio worker threads
#   NUMBERS [1000]       population size
#   PARTITIONS [64]      the gateway's --partitions (docs/redis.md: 64 for 3–6 primaries)
#   GATEWAY_ARGS []      extra gateway flags
#   GATEWAY_CPUS, REDIS_CPUS, CLIENT_CPUS []   taskset CPU lists (empty: not pinned)
#   BIN []               a directory with release binaries to use instead of building
# Raw results (JSON and text of every run, logs, results.tsv) go to
# <REPORT>-data/.
set -euo pipefail

COMMAND_LINE="$0${*:+ $*}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REPORT=${1:-loadtest/scaling.md}
DATA="${REPORT%.md}-data"
DURATION=${DURATION:-10}
WARMUP=${WARMUP_SECONDS:-2}
RUNS=${RUNS:-3}
THREADS=${THREADS:-1 2}
TOPOLOGIES=${TOPOLOGIES:-single cluster}
CONCURRENCY=${CONCURRENCY:-128}
CONNECTIONS=${CONNECTIONS:-4}
RATE=${RATE:-}
CLIENT_THREADS=${CLIENT_THREADS:-1}
NUMBERS=${NUMBERS:-1000}
PARTITIONS=${PARTITIONS:-64}
CONTROL=${CONTROL:-1}
GATEWAY_ARGS=${GATEWAY_ARGS:-}
GATEWAY_CPUS=${GATEWAY_CPUS:-}
REDIS_CPUS=${REDIS_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
PREFIX=scal
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

say() { printf '\n== %s\n' "$*" >&2; }
# die, free_port, wait_port, wait_ready, stop
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"

SCENARIO=${SCENARIO:-authorize}
SCENARIO_ARGS=""
case $SCENARIO in
    authorize)
        UNIT=Authorize
        UNITS=Authorize
        ;;
    mix)
        UNIT=call
        UNITS=calls
        CONTROL=0
        SCENARIO_ARGS="--usage-clock-skew-seconds 14400"
        ;;
    *) die "SCENARIO: authorize or mix (got '$SCENARIO')" ;;
esac

for tool in redis-server redis-cli curl jq awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
REDIS_VERSION=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
[ "${REDIS_VERSION%%.*}" -ge 7 ] 2>/dev/null || die "Redis 7 or later is required (Functions); found ${REDIS_VERSION:-?}"
for t in $THREADS; do
    [ "$t" -ge 1 ] 2>/dev/null || die "THREADS must be positive integers (got '$THREADS')"
done
for topo in $TOPOLOGIES; do
    case $topo in single | cluster) ;; *) die "TOPOLOGIES: 'single' and/or 'cluster' (got '$topo')" ;; esac
done

BIN=$(release_bins "${BIN:-}")

rm -rf "$DATA"
mkdir -p "$DATA"
DATA_SHOWN=$DATA
DATA=$(cd "$DATA" && pwd)
PIDS=()
trap stop_all EXIT
trap 'exit 130' INT TERM

pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }
read -r -a PIN_G <<<"$(pin "$GATEWAY_CPUS")"
read -r -a PIN_R <<<"$(pin "$REDIS_CPUS")"
read -r -a PIN_C <<<"$(pin "$CLIENT_CPUS")"
if [ -n "$GATEWAY_CPUS$REDIS_CPUS$CLIENT_CPUS" ]; then
    command -v taskset >/dev/null || die "taskset is required for GATEWAY_CPUS/REDIS_CPUS/CLIENT_CPUS"
    PLACEMENT="taskset: gateway on CPU(s) ${GATEWAY_CPUS:-any}, redis-servers on ${REDIS_CPUS:-any}, generator on ${CLIENT_CPUS:-any}"
else
    PLACEMENT="not pinned: the gateway, every redis-server and the generator share all $(nproc) CPU(s)"
fi

# A free port whose cluster bus port (+10000) is free too.
free_cluster_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(free_port)
        if [ "$p" -le 55000 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free cluster port found"
}

# start_redis NAME PORT [args…]: a private redis-server; sets REDIS_PID.
start_redis() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$DATA/$name"
    ${PIN_R[@]+"${PIN_R[@]}"} redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$DATA/$name" --logfile "$DATA/$name/redis.log" "$@" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$port" "$REDIS_PID" || die "redis-server $name did not start (see $DATA/$name/redis.log)"
}

# Per topology: the ports, the pids (watched as redis / redis1..3) and the store URL.
declare -A PORTS REDIS_PIDS URL
for topo in $TOPOLOGIES; do
    if [ "$topo" = single ]; then
        p=$(free_port)
        start_redis single "$p"
        PORTS[single]=$p
        REDIS_PIDS[single]="redis=$REDIS_PID"
        URL[single]="redis://127.0.0.1:$p"
    else
        ports=()
        watch=()
        for i in 1 2 3; do
            p=$(free_cluster_port)
            start_redis "cluster$i" "$p" --cluster-enabled yes --cluster-config-file nodes.conf
            ports+=("$p")
            watch+=("redis$i=$REDIS_PID")
        done
        say "creating the 3-master cluster on ports ${ports[*]}"
        redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
            >"$DATA/cluster-create.log" 2>&1 || die "redis-cli --cluster create failed (see $DATA/cluster-create.log)"
        for _ in $(seq 1 200); do
            ok=1
            for p in "${ports[@]}"; do
                redis-cli -p "$p" CLUSTER INFO | grep -q '^cluster_state:ok' || ok=0
            done
            [ "$ok" = 1 ] && break
            sleep 0.1
        done
        [ "$ok" = 1 ] || die "the cluster did not become ok"
        PORTS[cluster]="${ports[*]}"
        REDIS_PIDS[cluster]="${watch[*]}"
        URL[cluster]="redis+cluster://$(printf '127.0.0.1:%s,' "${ports[@]}" | sed 's/,$//')"
    fi
done

# How the PARTITIONS partitions' hash tags fall on the cluster's masters.
PARTITION_SPREAD=""
if [ -n "${PORTS[cluster]:-}" ]; then
    read -r -a cports <<<"${PORTS[cluster]}"
    # slot ranges of every master: "start end port" (CLUSTER NODES: id
    # ip:port@bus flags master ping pong epoch state range…)
    ranges=$(redis-cli -p "${cports[0]}" CLUSTER NODES | awk '$3 ~ /master/ {
        split($2, a, "[:@]")
        for (i = 9; i <= NF; i++) { n = split($i, r, "-"); print r[1], (n > 1 ? r[2] : r[1]), a[2] } }')
    for n in $(seq 0 $((PARTITIONS - 1))); do
        slot=$(redis-cli -p "${cports[0]}" CLUSTER KEYSLOT "{$PREFIX:p$n}")
        awk -v s="$slot" '$1 <= s && s <= $2 { print $3 }' <<<"$ranges"
    done | sort | uniq -c >"$DATA/partition-spread.txt"
    PARTITION_SPREAD=$(for p in "${cports[@]}"; do
        c=$(awk -v p="$p" '$2 == p { print $1 }' "$DATA/partition-spread.txt")
        printf '%s/' "${c:-0}"
    done | sed 's:/$::')
fi

# utime+stime (clock ticks) of a process, and of its threads named NAME: the
# gateway's Redis connections are driven by one thread of their own
# (callauth-redis-io, src/store/redis/conn.rs), whatever --worker-threads says;
# /proc shows a thread's name cut to 15 bytes: callauth-redis-.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
thread_ticks() {
    local task sum=0
    for task in /proc/"$1"/task/*; do
        [ "$(cat "$task/comm" 2>/dev/null)" = "$2" ] || continue
        sum=$((sum + $(sed 's/.*) //' "$task/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$sum"
}

flush_all() {
    local p
    # shellcheck disable=SC2086
    for p in ${PORTS[$1]}; do
        redis-cli -p "$p" FLUSHALL >/dev/null
    done
}
keys_per_node() {
    local p
    # shellcheck disable=SC2086
    for p in ${PORTS[$1]}; do
        printf '%s/' "$(redis-cli -p "$p" DBSIZE)"
    done | sed 's:/$::'
}

# The measured cases.
TSV="$DATA/results.tsv"
printf 'topology\tthreads\trun\tat\tload1\tthroughput\tp50_us\tp99_us\terrors\tgw_us\tgw_cores\tredis_us\tredis_cores\tredis_max_us\tshard_us\tshard_cores\tclient_us\tclient_cores\tother_cores\tkeys\twarnings\tmoney\tio_share\n' >"$TSV"

load_args=(--concurrency "$CONCURRENCY")
LOAD_TEXT="closed loop, $CONCURRENCY $UNITS in flight over $CONNECTIONS HTTP/2 connections"
if [ -n "$RATE" ]; then
    load_args=(--rate "$RATE")
    LOAD_TEXT="open loop at $RATE $UNITS/s over $CONNECTIONS HTTP/2 connections"
fi
CASES=""
[ "$CONTROL" = 1 ] && CASES="noop:1"
for topo in $TOPOLOGIES; do
    for t in $THREADS; do
        CASES="$CASES $topo:$t"
    done
done

for run in $(seq 1 "$RUNS"); do
    for c in $CASES; do
        topo=${c%:*}
        t=${c#*:}
        name="$topo-t$t-run$run"
        if [ "$topo" = noop ]; then
            for attempt in 1 2 3; do
                GRPC_PORT=$(free_port)
                ${PIN_G[@]+"${PIN_G[@]}"} "$BIN/callauth-loadtest" noop-server --listen "127.0.0.1:$GRPC_PORT" \
                    --worker-threads 1 >"$DATA/$name.noop.log" 2>&1 &
                GW_PID=$!
                PIDS+=("$GW_PID")
                wait_port "$GRPC_PORT" "$GW_PID" && break
                # a port found free may be taken before the bind (an outgoing
                # connection's local port): try other ports
                grep -q 'Address already in use' "$DATA/$name.noop.log" && [ "$attempt" -lt 3 ] ||
                    die "the no-op server did not start (see $DATA/$name.noop.log)"
            done
            watch=(--watch-pid "gateway=$GW_PID" --skip-setup)
        else
            for attempt in 1 2 3; do
                GRPC_PORT=$(free_port)
                HTTP_PORT=$(free_port)
                # shellcheck disable=SC2086
                ${PIN_G[@]+"${PIN_G[@]}"} env RUST_LOG=warn "$BIN/callauth-gateway" --demo \
                    --store "${URL[$topo]}" --redis-prefix "$PREFIX" --partitions "$PARTITIONS" \
                    --prepaid-code-key "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" \
                    --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
                    --worker-threads "$t" $SCENARIO_ARGS $GATEWAY_ARGS >"$DATA/$name.gateway.log" 2>&1 &
                GW_PID=$!
                PIDS+=("$GW_PID")
                wait_ready "$HTTP_PORT" "$GW_PID" && break
                grep -q 'Address already in use' "$DATA/$name.gateway.log" && [ "$attempt" -lt 3 ] ||
                    die "the gateway did not start (see $DATA/$name.gateway.log)"
            done
            watch=(--watch-pid "gateway=$GW_PID")
            for w in ${REDIS_PIDS[$topo]}; do
                watch+=(--watch-pid "$w")
            done
        fi
        load1=$(cut -d' ' -f1 /proc/loadavg)
        gw_before=$(cpu_ticks "$GW_PID")
        io_before=$(thread_ticks "$GW_PID" callauth-redis-)
        at=$(date -u +%H:%M:%S)
        say "run $run/$RUNS: $topo, $t gateway thread(s) ($LOAD_TEXT; ${WARMUP} s + ${DURATION} s; load average $load1)"
        rc=0
        ${PIN_C[@]+"${PIN_C[@]}"} "$BIN/callauth-loadtest" run --scenario "$SCENARIO" \
            --endpoint "http://127.0.0.1:$GRPC_PORT" "${load_args[@]}" --connections "$CONNECTIONS" \
            --numbers "$NUMBERS" --duration "$DURATION" --warmup-seconds "$WARMUP" \
            --worker-threads "$CLIENT_THREADS" "${watch[@]}" \
            --label "$topo, $t gateway thread(s), run $run" --json-out "$DATA/$name.json" \
            >"$DATA/$name.txt" 2>&1 || rc=$?
        grep -E '^(Authorize|calls|  (client|gateway|redis[0-9]*) |  other)|WARNING|ERRORS|money check' "$DATA/$name.txt" >&2 || true
        case $rc in
            0 | 2 | 3) ;; # 2: the run saw errors, 3: the money check failed; the report flags both
            *)
                cat "$DATA/$name.txt" >&2
                die "callauth-loadtest run failed (exit $rc) for $name"
                ;;
        esac
        # The Redis I/O thread's share of the gateway's CPU over the whole
        # case (setup and warm-up included).
        io_share=$(awk -v g=$(($(cpu_ticks "$GW_PID") - gw_before)) \
            -v i=$(($(thread_ticks "$GW_PID" callauth-redis-) - io_before)) -v topo="$topo" \
            'BEGIN { if (topo == "noop" || g <= 0) print "?"; else printf "%.3f", i / g }')
        stop "$GW_PID"
        keys=-
        if [ "$topo" != noop ]; then
            keys=$(keys_per_node "$topo")
            flush_all "$topo"
        fi
        jq -r --arg topo "$topo" --arg t "$t" --arg run "$run" --arg at "$at" --arg load1 "$load1" \
            --arg keys "$keys" --arg io "$io_share" '
            def r(d): if . == null then "?" else (. * pow(10; d) | round) / pow(10; d) | tostring end;
            # CPU µs per unit measured (an Authorize, or a whole call of the mix)
            .summary.requests as $n
            | def per: if .cpu_seconds == null or $n == 0 then null else .cpu_seconds * 1e6 / $n end;
            [.cpu | to_entries[] | select(.key | test("^redis[0-9]*$"))] as $shards
            | [$topo, $t, $run, $at, $load1,
               (.summary.throughput_per_s | r(0)), (.summary.p50_us | r(0)), (.summary.p99_us | r(0)),
               (.summary.errors_total | tostring),
               (.cpu.gateway | per | r(2)), (.cpu.gateway.cores | r(2)),
               ([$shards[].value | per] | add | r(2)), ([$shards[].value.cores] | add | r(2)),
               ([$shards[].value | per] | max | r(2)),
               ([$shards[].value | per | r(1)] | join("/")),
               ([$shards[].value.cores | r(2)] | join("/")),
               (.cpu.client | per | r(2)), (.cpu.client.cores | r(2)),
               (.summary.other_cpu_cores | r(2)), $keys,
               ([.warnings[] | select(test("machine was not quiet") | not)] | length | tostring),
               (if .money_check == null then "-" elif .money_check.ok then "ok" else "FAILED" end), $io]
            | @tsv' "$DATA/$name.json" >>"$TSV"
    done
done
FINISHED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_AT_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ----------------------------------------------------------- the report
say "report"
MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | sed -n 1p)
MEM_GB=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ')
KNOBS="SCENARIO=$SCENARIO CONTROL=$CONTROL DURATION=$DURATION WARMUP_SECONDS=$WARMUP RUNS=$RUNS THREADS=\"$THREADS\" TOPOLOGIES=\"$TOPOLOGIES\" CONCURRENCY=$CONCURRENCY CONNECTIONS=$CONNECTIONS RATE=${RATE:-} CLIENT_THREADS=$CLIENT_THREADS NUMBERS=$NUMBERS PARTITIONS=$PARTITIONS GATEWAY_ARGS=\"$GATEWAY_ARGS\" GATEWAY_CPUS=$GATEWAY_CPUS REDIS_CPUS=$REDIS_CPUS CLIENT_CPUS=$CLIENT_CPUS"

# stat TOPO THREADS COLUMN DIGITS: "median (min–max)" of a column over the runs.
stat() {
    awk -F'\t' -v topo="$1" -v t="$2" -v col="$3" -v d="$4" '
        NR > 1 && $1 == topo && $2 == t && $col != "?" { v[++n] = $col + 0 }
        END {
            if (n == 0) { print "?"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            f = "%." d "f"
            printf f " (" f "–" f ")\n", med, v[1], v[n]
        }' "$TSV"
}
# derived TOPO THREADS COLUMN EXPR: "median (min–max)" of EXPR(column value x)
# per run, e.g. 1e6/x; min and max follow the expression.
derived() {
    awk -F'\t' -v topo="$1" -v t="$2" -v col="$3" -v kind="$4" '
        function f(x) { return kind == "per_core" ? 1e6 / x : x / 100 }
        NR > 1 && $1 == topo && $2 == t && $col != "?" && $col > 0 { v[++n] = f($col + 0) }
        END {
            if (n == 0) { print "?"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            fmt = kind == "per_core" ? "%.0f" : "%.2f"
            printf fmt " (" fmt "–" fmt ")\n", med, v[1], v[n]
        }' "$TSV"
}
# ratio TOPO THREADS: gateway cores per Redis shard core (gw_us / redis_us), per run.
ratio() {
    awk -F'\t' -v topo="$1" -v t="$2" '
        NR > 1 && $1 == topo && $2 == t && $10 != "?" && $12 > 0 { v[++n] = $10 / $12 }
        END {
            if (n == 0) { print "?"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.2f (%.2f–%.2f)\n", med, v[1], v[n]
        }' "$TSV"
}

# io_limit TOPO THREADS: what one gateway's Redis I/O thread can carry at
# one core: 10⁶ / (its share × gateway µs), per run.
io_limit() {
    awk -F'\t' -v topo="$1" -v t="$2" '
        NR > 1 && $1 == topo && $2 == t && $10 != "?" && $23 != "?" && $23 > 0 { v[++n] = 1e6 / ($23 * $10) }
        END {
            if (n == 0) { print "?"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.0f (%.0f–%.0f)\n", med, v[1], v[n]
        }' "$TSV"
}
# vs_control TOPO THREADS: gateway µs / the control's µs of the same run.
vs_control() {
    awk -F'\t' -v topo="$1" -v t="$2" '
        NR > 1 && $1 == "noop" && $10 != "?" { c[$3] = $10 }
        NR > 1 && $1 == topo && $2 == t && $10 != "?" { g[$3] = $10 }
        END {
            for (r in g) if (c[r] > 0) v[++n] = g[r] / c[r]
            if (n == 0) { print "–"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.2f (%.2f–%.2f)\n", med, v[1], v[n]
        }' "$TSV"
}

{
    cat <<EOF
# callauth scaling: gateway worker threads × Redis topology (issue 13.4)

Generated by \`loadtest/scaling.sh\`; raw results in \`$DATA_SHOWN/\` (\`results.tsv\`, one JSON and text per case, logs).

* **Command:** \`$KNOBS $COMMAND_LINE\` (from \`$ROOT\`)
* **Commit:** $GIT_REV ($GIT_DIRTY uncommitted file(s) in the working tree); binaries from \`$BIN\`
* **Time (UTC):** $STARTED – $FINISHED ($(($(date +%s) - T0)) s including the build, if any); load average at start $LOAD_AT_START, at end $LOAD_AT_END
* **Machine:** $(nproc) CPU(s), ${MODEL:-unknown CPU}, ${MEM_GB:-?} GB RAM, $(uname -sr)
* **Versions:** $(rustc --version 2>/dev/null || echo "rustc ?"), Redis $REDIS_VERSION (private instances, \`--save '' --appendonly no\`)
* **Placement:** $PLACEMENT
* **Load:** \`callauth-loadtest run --scenario $SCENARIO\`, $LOAD_TEXT, generator with $CLIENT_THREADS worker thread(s); ${WARMUP} s warm-up + ${DURATION} s measured per case; population $NUMBERS numbers
* **Gateway:** \`callauth-gateway --demo --store <url> --redis-prefix $PREFIX --partitions $PARTITIONS --worker-threads <$(echo "$THREADS" | tr ' ' '|')>${SCENARIO_ARGS:+ $SCENARIO_ARGS}${GATEWAY_ARGS:+ $GATEWAY_ARGS}\`, a fresh process per case; every node flushed after each case
EOF
    for topo in $TOPOLOGIES; do
        if [ "$topo" = single ]; then
            echo "* **single:** one redis-server, \`${URL[single]}\`"
        else
            echo "* **cluster:** 3 masters, no replicas, \`${URL[cluster]}\`; the $PARTITIONS partitions' hash tags \`{$PREFIX:pN}\` fall $PARTITION_SPREAD on the three masters"
        fi
    done
    CONTROL_NOTE=""
    [ "$CONTROL" = 1 ] && CONTROL_NOTE='Rows "noop" are the control (below). '
    cat <<EOF

## Every case

${CONTROL_NOTE}Throughput ($UNITS/s) and latency of
Authorize (closed loop: from send; open loop: from the scheduled start), CPU
µs per $UNIT answered in the measured window and cores (CPU seconds / window)
of each process; "shards" lists each redis-server's µs and cores (a single
node has one); "other" is the CPU every other process of the machine used
meanwhile (from \`/proc/stat\`); "keys" the keys on each node after the case.

| topology | gw threads | run | at (UTC) | load avg | $UNITS/s | Authorize p50 µs | Authorize p99 µs | errors | gateway µs | gateway cores | Redis µs (Σ shards) | Redis cores (Σ) | shards µs | shards cores | generator µs | generator cores | other cores | keys | warnings | money check | gateway's Redis I/O thread share |
|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|---|--:|---|--:|
EOF
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16, $17, $18, $19, $20, $21, $22, $23 }' "$TSV"
    cat <<EOF

## Per configuration: median (min–max) over the runs

| topology | gw threads | $UNITS/s | Authorize p50 µs | Authorize p99 µs | gateway µs/$UNIT | gateway cores | Redis µs/$UNIT (Σ shards) | hottest shard µs/$UNIT | Redis cores (Σ) | generator cores | other cores | gateway's Redis I/O thread share |
|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
EOF
    for c in $CASES; do
        topo=${c%:*}
        t=${c#*:}
        label=$topo
        [ "$topo" = noop ] && label="no-op server (control)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$t" \
            "$(stat "$topo" "$t" 6 0)" "$(stat "$topo" "$t" 7 0)" "$(stat "$topo" "$t" 8 0)" \
            "$(stat "$topo" "$t" 10 1)" "$(stat "$topo" "$t" 11 2)" "$(stat "$topo" "$t" 12 1)" \
            "$(stat "$topo" "$t" 14 1)" "$(stat "$topo" "$t" 13 2)" "$(stat "$topo" "$t" 18 2)" \
            "$(stat "$topo" "$t" 19 2)" "$(stat "$topo" "$t" 23 2)"
    done
    cat <<EOF

## Derived sizing figures: median (min–max) over the runs

From the CPU per $UNIT, not from the throughput (see below):
$UNITS/s per gateway core = 10⁶ / gateway µs; per Redis shard core =
10⁶ / Σ shards' µs (calls spread evenly over the shards; a Redis shard is
one core: its commands run on one thread); cores per 10 000 $UNITS/s =
µs / 100; gateway cores per Redis shard core = gateway µs / Σ shards' µs.
With an uneven spread the hottest shard saturates first, at 10⁶ / its µs
$UNITS/s for the whole cluster. Whatever its worker threads, a gateway
drives all its Redis connections from one thread of its own
(\`callauth-redis-io\`); at one core that thread carries 10⁶ / (its share
of the gateway's CPU × gateway µs) $UNITS/s, a ceiling per gateway that
more cores do not raise.

| topology | gw threads | $UNITS/s per gateway core | $UNITS/s per Redis shard core | gateway cores per 10 000/s | Redis shard cores per 10 000/s | cluster limit by the hottest shard ($UNITS/s) | gateway cores per Redis shard core | gateway µs ÷ control µs (same run) | one gateway's limit by its Redis I/O thread ($UNITS/s) |
|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|
EOF
    for topo in $TOPOLOGIES; do
        for t in $THREADS; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$topo" "$t" \
                "$(derived "$topo" "$t" 10 per_core)" "$(derived "$topo" "$t" 12 per_core)" \
                "$(derived "$topo" "$t" 10 per_10k)" "$(derived "$topo" "$t" 12 per_10k)" \
                "$(derived "$topo" "$t" 14 per_core)" "$(ratio "$topo" "$t")" "$(vs_control "$topo" "$t")" \
                "$(io_limit "$topo" "$t")"
        done
    done
    cat <<EOF

## What this measurement can and cannot show

* Every process of the case — the gateway, each redis-server and the load
  generator — runs on the same $(nproc) CPU(s) ($PLACEMENT). At
  saturation the box, not one process, is the bottleneck: the throughput
  columns say what this box does, not what one gateway or one shard can do.
  In particular a 3-master cluster on $(nproc) cores cannot be faster than
  one node: its three Redis processes, the gateway and the generator share
  the same cores, and each extra round trip costs CPU on all of them.
  The figures that transfer to a deployment are the **CPU µs per
  $UNIT** of each process (and the sizing derived from them), not the
  throughput.
* CPU per $UNIT at saturation on a contended box is an upper estimate
  of the work (cache and scheduler contention inflate it) and a lower
  estimate of the cost at low load (a busy Redis or gateway handles many
  requests per wake-up; a quiet one pays the system calls per request).
  Size with headroom: a Redis shard or a gateway core planned at ≤ 50–70 %.
* "other cores" shows how much the rest of the machine (other builds) took
  during each measured window; runs with a high value are the noisy ones.
* The control (when CONTROL=1: the no-op gRPC server, 1 worker thread,
  same load, first case of every run) does no work beyond gRPC; its CPU per request
  on a quiet machine is known (docs/performance.md: 14–16 µs on the 2-vCPU
  development VM). Its value in a run, divided by that, is roughly how much
  the machine's load inflated that run's CPU figures; "gateway µs ÷ control
  µs" cancels most of it.
* The generator's CPU is shown so that a reader can see when it, not the
  gateway, limited a case (it had $CLIENT_THREADS worker thread(s)).
* On a cluster a postpaid Authorize with consent is two round trips
  (\`claim_call\` in the call id's slot, then \`authorize\` in the number's;
  docs/redis.md), against one Function call on a single node: the Σ shards'
  µs of the cluster includes that second call, and what cluster mode adds
  per command (the slot check) and per second (the cluster bus).
EOF
} >"$REPORT"
say "wrote $REPORT"
