#!/usr/bin/env bash
# chaos.sh — issue 10: the mix scenario under Redis and gateway kills, then
# the money checked to the öre (docs/chaos.md).
#
#   loadtest/chaos.sh [DATA_DIR]          (default: loadtest/chaos-data/<UTC time>)
#
# Starts, all private and on free ports:
#   * a redis-server with the durability docs/redis.md asks for money
#     ("Redis settings money needs": appendonly yes, noeviction) at its
#     strictest: appendfsync always, so a SIGKILL loses no acknowledged write;
#   * two callauth-gateways on it (same prefix, the demo catalogue, one
#     prepaid-code key; --usage-clock-skew-seconds 14400 as the mix needs);
#   * a callauth-settlement worker on its own PostgreSQL database (created on
#     127.0.0.1:5432 and dropped at exit; SETTLEMENT=0 leaves it out).
# Then runs `callauth-loadtest run --scenario mix` (open loop) over both
# gateways with --retry-seconds (a transiently failed RPC is resent unchanged
# on the other gateway, as an IVR and a merchant do), and meanwhile:
#   T+10 s  SIGKILL Redis, restart it from its AOF 3 s later
#   T+22 s  SIGKILL gateway 1, restart it 2 s later
#   T+34 s  SIGKILL Redis, restart it 1 s later
#   T+46 s  SIGTERM gateway 0 (graceful drain), restart it when it has exited
# (T = the end of the loadtest's setup; the load runs WARMUP + DURATION s).
#
# Checks, and exits non-zero when any fails:
#   1. the loadtest's money check: the charges the clients saw acknowledged
#      (APPLIED, or DUPLICATE answering a resend whose first ack was lost)
#      equal the growth of the gateways' exposure and the drop of the prepaid
#      balances, to the öre (its exit status 3 otherwise);
#   2. every RPC got an answer in the end: no call left unanswered, no usage
#      record without an ack, no RPC given up (else check 1 proves nothing);
#   3. with settlement: `callauth-settlement reconcile` (after the worker has
#      committed every event) finds no account drifting, no event is
#      dead-lettered, and the ledger's usage — one row per call, by primary
#      key — has as many rows and the same öre, postpaid and prepaid, as the
#      acknowledged charges, and its prepaid debits equal the codes' balance
#      drop in the store.
#
# Optional environment: RATE (250 calls/s), DURATION (70 s measured),
# WARMUP (5 s), RETRY_SECONDS (60), NUMBERS (10000), SETTLEMENT (1),
# NO_BUILD (0: build the release binaries first), PG_URL_BASE
# (postgres://postgres@127.0.0.1:5432).
#
# Negative controls (the checks must fail; docs/chaos.md): TAMPER_ORE=N adds
# N öre to one caller's unbilled amount in Redis at T+50 s, behind the
# gateways' back (a charge nobody acknowledged); RETRY_SECONDS=0 lets the
# clients give up after one attempt (outcomes unknown to them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# die, free_port, wait_port, wait_ready, stop
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"

RATE=${RATE:-250}
DURATION=${DURATION:-70}
WARMUP=${WARMUP:-5}
RETRY_SECONDS=${RETRY_SECONDS:-60}
NUMBERS=${NUMBERS:-10000}
SETTLEMENT=${SETTLEMENT:-1}
TAMPER_ORE=${TAMPER_ORE:-0}
PG_URL_BASE=${PG_URL_BASE:-postgres://postgres@127.0.0.1:5432}
DATA=${1:-loadtest/chaos-data/$(date -u +%Y%m%dT%H%M%SZ)}

for tool in cargo redis-server redis-cli curl jq; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[ "$SETTLEMENT" = 0 ] || command -v psql >/dev/null || die "psql is required (or SETTLEMENT=0)"

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [ "${NO_BUILD:-0}" = 0 ]; then
    say "building the release binaries"
    cargo build --release --bins -p callauth -p callauth-loadtest >&2
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN="$TARGET_DIR/release"
for b in callauth-gateway callauth-loadtest $([ "$SETTLEMENT" = 0 ] || echo callauth-settlement); do
    [ -x "$BIN/$b" ] || die "$BIN/$b was not built"
done

mkdir -p "$DATA/redis"
DATA=$(cd "$DATA" && pwd)
TIMELINE="$DATA/timeline.txt"
: >"$TIMELINE"

REDIS_PID=""
GW_PID=("" "")
SETTLE_PID=""
LT_PID=""
DB=""
cleanup() {
    local p
    for p in "$LT_PID" "$SETTLE_PID" "${GW_PID[@]}" "$REDIS_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    for p in "$LT_PID" "$SETTLE_PID" "${GW_PID[@]}" "$REDIS_PID"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    if [ -n "$DB" ]; then
        psql "$PG_URL_BASE/postgres" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------- helpers
T0=""
# event TEXT: one line of the fault timeline, stamped with seconds since T0.
event() {
    local t="-"
    [ -n "$T0" ] && t=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf 'T+%s s  %s\n' "$t" "$*" | tee -a "$TIMELINE" >&2
}

REDIS_PORT=$(free_port)
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
        --appendonly yes --appendfsync always --save '' --maxmemory-policy noeviction \
        --logfile "$DATA/redis.log" &
    REDIS_PID=$!
    # PONG only once the AOF is loaded (LOADING before).
    for _ in $(seq 1 600); do
        [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server did not start (see $DATA/redis.log)"
        sleep 0.05
    done
    die "redis-server did not answer PING within 30 s"
}

PREFIX="chaos$$"
CODE_KEY=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
GRPC_PORT=("$(free_port)" "$(free_port)")
HTTP_PORT=("$(free_port)" "$(free_port)")
start_gateway() {
    local i=$1
    env RUST_LOG=warn "$BIN/callauth-gateway" --demo --store "$REDIS_URL" --redis-prefix "$PREFIX" \
        --prepaid-code-key "$CODE_KEY" --usage-clock-skew-seconds 14400 \
        --grpc-listen "127.0.0.1:${GRPC_PORT[$i]}" --http-listen "127.0.0.1:${HTTP_PORT[$i]}" \
        >>"$DATA/gateway$i.log" 2>&1 &
    GW_PID[i]=$!
    wait_ready "${HTTP_PORT[$i]}" "${GW_PID[$i]}" || die "gateway $i did not become ready (see $DATA/gateway$i.log)"
}

SETTLE_GRPC=$(free_port)
SETTLE_HTTP=$(free_port)
start_settlement() {
    env RUST_LOG=warn "$BIN/callauth-settlement" --database-url "$PG_URL_BASE/$DB" \
        --store "$REDIS_URL" --redis-prefix "$PREFIX" run \
        --grpc-listen "127.0.0.1:$SETTLE_GRPC" --http-listen "127.0.0.1:$SETTLE_HTTP" \
        >>"$DATA/settlement.log" 2>&1 &
    SETTLE_PID=$!
    wait_port "$SETTLE_HTTP" "$SETTLE_PID" || die "the settlement worker did not start (see $DATA/settlement.log)"
}

# The settlement worker must outlive Redis's absences; if it did not, say
# so (a finding) and start it again so that the ledger check can still run.
SETTLE_RESTARTS=0
check_settlement() {
    [ "$SETTLEMENT" = 0 ] && return 0
    if ! kill -0 "$SETTLE_PID" 2>/dev/null; then
        local rc=0
        wait "$SETTLE_PID" || rc=$?
        event "!! the settlement worker had exited (status $rc); restarting it"
        SETTLE_RESTARTS=$((SETTLE_RESTARTS + 1))
        start_settlement
    fi
}

kill_redis() {
    local down=$1
    event "SIGKILL Redis (pid $REDIS_PID)"
    kill -9 "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    sleep "$down"
    start_redis
    event "Redis restarted from its AOF (pid $REDIS_PID), answering PING"
}

kill_gateway() {
    local i=$1 signal=$2 down=$3
    event "SIG$signal gateway $i (pid ${GW_PID[$i]})"
    local t=$SECONDS
    kill -"$signal" "${GW_PID[$i]}"
    wait "${GW_PID[$i]}" 2>/dev/null || true
    event "gateway $i exited after $((SECONDS - t)) s"
    sleep "$down"
    start_gateway "$i"
    event "gateway $i restarted (pid ${GW_PID[$i]}) and ready"
}

# at SECONDS_AFTER_T0: sleeps until then.
at() {
    local wait_s
    wait_s=$(awk -v a="$T0" -v b="$(date +%s.%N)" -v t="$1" 'BEGIN { w = a + t - b; print (w > 0 ? w : 0) }')
    sleep "$wait_s"
}

# ---------------------------------------------------------------- start
start_redis
say "Redis on $REDIS_PORT (AOF, appendfsync always), data in $DATA/redis"
start_gateway 0
start_gateway 1
say "gateways: grpc ${GRPC_PORT[0]} / ${GRPC_PORT[1]}, prefix $PREFIX"
if [ "$SETTLEMENT" != 0 ]; then
    DB="callauth_chaos_$$"
    psql "$PG_URL_BASE/postgres" -qc "create database $DB" >/dev/null
    start_settlement
    say "settlement worker on database $DB"
fi

say "the mix: $RATE calls/s, ${WARMUP} s warm-up + ${DURATION} s, retries for up to ${RETRY_SECONDS} s"
"$BIN/callauth-loadtest" run --scenario mix \
    --endpoint "http://127.0.0.1:${GRPC_PORT[0]}" --endpoint "http://127.0.0.1:${GRPC_PORT[1]}" \
    --connections 2 --rate "$RATE" --numbers "$NUMBERS" --duration "$DURATION" \
    --warmup-seconds "$WARMUP" --retry-seconds "$RETRY_SECONDS" \
    --drain-seconds $((RETRY_SECONDS + 60)) --label chaos --json-out "$DATA/mix.json" \
    >"$DATA/mix.txt" 2>&1 &
LT_PID=$!

# T0: the load starts right after the setup line (and the money snapshot).
for _ in $(seq 1 1200); do
    grep -q '^setup:' "$DATA/mix.txt" 2>/dev/null && break
    kill -0 "$LT_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q '^setup:' "$DATA/mix.txt" || { cat "$DATA/mix.txt" >&2; die "the loadtest did not finish its setup"; }
T0=$(date +%s.%N)
event "loadtest setup done; the load starts after the money snapshot"

at 10 && kill_redis 3 && check_settlement
at 22 && kill_gateway 1 KILL 2 && check_settlement
at 34 && kill_redis 1 && check_settlement
at 46 && kill_gateway 0 TERM 0 && check_settlement
if [ "$TAMPER_ORE" != 0 ]; then
    at 50
    # awk, not head: head would close the pipe early (SIGPIPE under pipefail).
    ACCOUNT=$(redis-cli -p "$REDIS_PORT" --scan --pattern "{$PREFIX:p*}:a:+4673*" | awk 'NR == 1')
    [ -n "$ACCOUNT" ] || die "TAMPER: no caller account found"
    redis-cli -p "$REDIS_PORT" HINCRBY "$ACCOUNT" ub "$TAMPER_ORE" >/dev/null
    event "TAMPER: $TAMPER_ORE öre added to the unbilled amount of one caller in Redis, behind the gateways' back"
fi

LT_RC=0
wait "$LT_PID" || LT_RC=$?
LT_PID=""
event "loadtest finished (exit status $LT_RC)"
check_settlement
cat "$DATA/mix.txt"

# ---------------------------------------------------------------- checks
FAIL=0
fail() {
    printf 'CHECK FAILED: %s\n' "$*" | tee -a "$DATA/checks.txt"
    FAIL=1
}
ok() { printf 'ok: %s\n' "$*" | tee -a "$DATA/checks.txt"; }
: >"$DATA/checks.txt"

[ -s "$DATA/mix.json" ] || die "the loadtest wrote no report (exit status $LT_RC)"
J="$DATA/mix.json"
case $LT_RC in
    0 | 2) ;; # 2: requests failed on the way (expected under faults; retried)
    3) fail "the loadtest's money check (exit status 3)" ;;
    *) fail "the loadtest failed (exit status $LT_RC)" ;;
esac
MONEY_OK=$(jq -r '.money_check.ok' "$J")
ACKED_POST=$(jq -r '.money_check.acked_postpaid_ore' "$J")
ACKED_PRE=$(jq -r '.money_check.acked_prepaid_ore' "$J")
GROWTH=$(jq -r '.money_check.gateway_exposure_growth_ore' "$J")
DROP=$(jq -r '.money_check.gateway_prepaid_balance_drop_ore' "$J")
if [ "$MONEY_OK" = true ] && [ "$ACKED_POST" = "$GROWTH" ] && [ "$ACKED_PRE" = "$DROP" ]; then
    ok "money: acknowledged postpaid $ACKED_POST öre = exposure growth $GROWTH öre; acknowledged prepaid $ACKED_PRE öre = balance drop $DROP öre"
else
    fail "money: acknowledged postpaid $ACKED_POST öre vs exposure growth $GROWTH öre; acknowledged prepaid $ACKED_PRE öre vs balance drop $DROP öre"
fi

UNFINISHED=$(jq -r '.unfinished' "$J")
GAVE_UP=$(jq -r '[.outcomes.retries // {} | to_entries[] | select(.key | test("GAVE UP")) | .value] | add // 0' "$J")
NO_ACK=$(jq -r '[.outcomes.usage // {} | to_entries[] | select(.key | test("NO ACK")) | .value] | add // 0' "$J")
if [ "$UNFINISHED" = 0 ] && [ "$GAVE_UP" = 0 ] && [ "$NO_ACK" = 0 ]; then
    ok "every RPC answered in the end: 0 calls unfinished, 0 RPCs given up, 0 usage records without an ack"
else
    fail "unanswered: $UNFINISHED call(s) unfinished, $GAVE_UP RPC(s) given up, $NO_ACK usage record(s) without an ack (the money check cannot be exact)"
fi
# Usage acks that carry a charge the client counted: APPLIED (first or
# resent) and DUPLICATE (an earlier attempt applied, its ack lost).
CHARGED_ACKS=$(jq -r '[.outcomes.usage // {} | to_entries[] | select(.key | test("^(APPLIED|DUPLICATE)")) | .value] | add // 0' "$J")

if [ "$SETTLEMENT" != 0 ]; then
    say "reconciling the store with the ledger (waits for the worker to commit every event)"
    RECON_RC=0
    env RUST_LOG=warn "$BIN/callauth-settlement" --database-url "$PG_URL_BASE/$DB" \
        --store "$REDIS_URL" --redis-prefix "$PREFIX" reconcile >"$DATA/reconcile.txt" 2>&1 || RECON_RC=$?
    cat "$DATA/reconcile.txt"
    if [ "$RECON_RC" = 0 ] && grep -qE '^[0-9]+ account\(s\) checked, 0 skipped .*, 0 drifting' "$DATA/reconcile.txt"; then
        ok "reconcile: $(grep -E 'account\(s\) checked' "$DATA/reconcile.txt")"
    else
        fail "reconcile (exit status $RECON_RC): $(grep -E 'account\(s\) checked' "$DATA/reconcile.txt" || echo 'no summary')"
    fi
    q() { psql "$PG_URL_BASE/$DB" -tAc "$1"; }
    DEAD=$(q "select count(*) from dead_letters")
    read -r L_POST_N L_POST L_PRE_N L_PRE <<<"$(q "select count(*) filter (where funding = 'postpaid'), coalesce(sum(charge_ore) filter (where funding = 'postpaid'), 0), count(*) filter (where funding = 'prepaid'), coalesce(sum(charge_ore) filter (where funding = 'prepaid'), 0) from usage" | tr '|' ' ')"
    USAGE_EVENTS=$(q "select count(*) from events where kind ilike '%usage%'")
    [ "$DEAD" = 0 ] && ok "no event dead-lettered" || fail "$DEAD event(s) dead-lettered"
    if [ "$L_POST" = "$ACKED_POST" ] && [ "$L_PRE" = "$ACKED_PRE" ] && [ $((L_POST_N + L_PRE_N)) = "$CHARGED_ACKS" ]; then
        ok "ledger usage: $L_POST_N postpaid rows $L_POST öre, $L_PRE_N prepaid rows $L_PRE öre = the $CHARGED_ACKS acknowledged charges ($USAGE_EVENTS usage event(s) committed)"
    else
        fail "ledger usage: $L_POST_N postpaid rows $L_POST öre, $L_PRE_N prepaid rows $L_PRE öre vs $CHARGED_ACKS acknowledged charges, postpaid $ACKED_POST öre, prepaid $ACKED_PRE öre ($USAGE_EVENTS usage event(s) committed)"
    fi
    DEBITS=$(q "select coalesce(sum(amount_ore), 0) from prepaid_movements where kind = 'debit'")
    if [ "$DEBITS" = "$DROP" ]; then
        ok "ledger prepaid debits $DEBITS öre = the codes' balance drop in the store"
    else
        fail "ledger prepaid debits $DEBITS öre vs the codes' balance drop in the store $DROP öre"
    fi
    [ "$SETTLE_RESTARTS" = 0 ] || fail "the settlement worker exited $SETTLE_RESTARTS time(s) during the run (see $DATA/settlement.log)"
fi

# ---------------------------------------------------------------- summary
{
    echo
    echo "== chaos summary ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo "faults:"
    sed 's/^/  /' "$TIMELINE"
    echo "calls started: $(jq -r .issued "$J"); errors by status (every failed attempt):"
    jq -r '.errors_total | to_entries[] | "  \(.key): \(.value)"' "$J"
    echo "retries:"
    jq -r '.outcomes.retries // {} | to_entries[] | "  \(.key): \(.value)"' "$J"
    echo "usage acks:"
    jq -r '.outcomes.usage // {} | to_entries[] | "  \(.key): \(.value)"' "$J"
    echo "checks:"
    sed 's/^/  /' "$DATA/checks.txt"
    echo "data: $DATA"
} | tee "$DATA/summary.txt"
[ "$FAIL" = 0 ] || { echo "CHAOS: FAILED" >&2; exit 1; }
echo "CHAOS: all checks passed"
