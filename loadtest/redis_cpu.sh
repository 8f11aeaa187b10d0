#!/usr/bin/env bash
# redis_cpu.sh — Redis CPU per postpaid Authorize: the authorize Function
# (exactly as the gateway calls it on a single node, the call-index claim
# inside it) against a one-line reference Function that receives the same
# keys and arguments and does one HINCRBY. Both run on one private Redis in
# the same run, with redis-benchmark as the client; Redis's own CPU
# (INFO cpu: used_cpu_user + used_cpu_sys) divided by the calls is the cost.
# Redis is single-threaded per shard, so this cost sets how many calls one
# shard can authorize (issue 13).
#
# Usage: loadtest/redis_cpu.sh [RUNS=3] [CALLS=200000] [CLIENTS=32]
# LIBRARY=<file> measures that library source instead of this tree's (e.g.
# an earlier version's, for a before/after comparison; versions 3, 4 and 5
# differ in their arguments, handled below).
# Prints one line per run and a summary; needs redis-server, redis-cli,
# redis-benchmark and cargo (to print the Function library).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
RUNS=${1:-3}
CALLS=${2:-200000}
CLIENTS=${3:-32}
for tool in cargo redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

WORK=$(mktemp -d)
trap 'stop "${REDIS_PID:-}"; rm -rf "$WORK"' EXIT
if [ -n "${LIBRARY:-}" ]; then
    cp "$LIBRARY" "$WORK/callauth.lua"
else
    (cd "$ROOT" && cargo run -q --bin callauth-gateway -- --print-function-library) >"$WORK/callauth.lua"
fi
VERSION=$(sed -n 's/^#!lua name=callauth_v\([0-9]*\)$/\1/p' "$WORK/callauth.lua")
[ -n "$VERSION" ] || die "could not read the library version"

PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --logfile "$WORK/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
wait_port "$PORT" "$REDIS_PID" || die "redis-server did not start"
cli() { redis-cli -p "$PORT" "$@"; }
cli FUNCTION LOAD REPLACE "$(cat "$WORK/callauth.lua")" >/dev/null
cli FUNCTION LOAD REPLACE "#!lua name=callauth_reference
redis.register_function('reference', function(keys, args) return redis.call('HINCRBY', keys[1], 'pd', 1) end)" >/dev/null

ACCOUNT='{bench:p0}:a:+46700000000'
# A registered holder with a credit-decision limit no run exhausts.
cli HSET "$ACCOUNT" dir 1 ls 3 lf 100000000000000 >/dev/null
NOW_MS=$(($(date +%s) * 1000))
# The consent event as the gateway writes it (a real one's shape and size).
CONSENT_JSON='{"event_id":"consent:c-__rand_int__","at_ms":'$NOW_MS',"partition":0,"consent_recorded":{"call_id":"c-__rand_int__","number":"+46700000000","number_withheld":false,"service_number":"+469001001010","merchant_id":"stjarnlinjen","funding":"FUNDING_POSTPAID","code_id":"","terms_id":"t-469001001010-1","price_per_minute_ore":2990,"minimum_minutes":0,"billing_step_seconds":60,"reminder_fee_ore":6000,"age_confirmed":true,"own_number_confirmed":true,"step1_at_ms":'$((NOW_MS - 9000))',"terms_accepted":true,"step2_at_ms":'$((NOW_MS - 2000))',"ivr_client":"ivr-stockholm-1","ivr_id":"node-7","line_ref":"","authorized_at_ms":'$NOW_MS'}}'
# The keys and ARGV of `authorize` (callauth.lua; calls.rs postpaid_cmd):
# account, hold, expiry, events, call index; now, call_id, number, service,
# merchant, terms_id, price, step, minimum, quota, max_call, grace_ms,
# retention_ms, first_time_limit, established_limit, consent verdict,
# partition, ivr_client, with_consent, consent JSON, VAT rate[, the hold's
# text fields (version 5)][, `claimed` (version 4)]; the index's payer and
# time to live. The expiry key is the version 5 index's base (version 4 used
# it as its sorted set).
KEYS=("$ACCOUNT" '{bench:p0}:h:c-__rand_int__' '{bench:p0}:x' '{bench:p0}:events' '{bench:p0}:call:c-__rand_int__')
ARGS=("$NOW_MS" c-__rand_int__ +46700000000 +469001001010 stjarnlinjen t-469001001010-1
    2990 60 0 900 14400 120000 259200000 150000 300000 0 0 ivr-stockholm-1 1 "$CONSENT_JSON" 25)
# From version 5 the hold's text fields, as the gateway encodes them.
[ "$VERSION" -ge 5 ] && ARGS+=("$(hold_fixed_fields n +46700000000 +46700000000 +469001001010 \
    stjarnlinjen t-469001001010-1 ivr-stockholm-1)")
# From version 4 a `claimed` marker (empty: the Function claims the index itself).
[ "$VERSION" -ge 4 ] && ARGS+=("")
ARGS+=('n|0|+46700000000' $((14400 * 1000 + 120000 + 259200000)))

cpu_seconds() { cli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'; }
errors() { cli INFO stats | tr -d '\r' | awk -F: '/^total_error_replies:/ { print $2 }'; }

# bench FUNCTION: Redis CPU µs per call over CALLS calls (new call ids each).
bench() {
    local before after e0 e1
    e0=$(errors)
    before=$(cpu_seconds)
    redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$CALLS" -r 2000000000 \
        FCALL "$1" "${#KEYS[@]}" "${KEYS[@]}" "${ARGS[@]}" >/dev/null 2>&1
    after=$(cpu_seconds)
    e1=$(errors)
    [ "$e0" = "$e1" ] || die "$1 answered $((e1 - e0)) errors"
    awk -v a="$after" -v b="$before" -v n="$CALLS" 'BEGIN { printf "%.2f", (a - b) * 1e6 / n }'
}

# The authorize Function must grant (answer 1) before anything is measured.
FIRST=$(cli --raw FCALL "ca_v${VERSION}_authorize" "${#KEYS[@]}" "${KEYS[@]//__rand_int__/check}" \
    "${ARGS[@]//__rand_int__/check}" | sed -n 1p)
[ "$FIRST" = 1 ] || die "the authorize Function did not grant the check call (answer: $FIRST)"

printf 'Redis %s, library v%s, %s calls per run, %s clients, load average %s\n' \
    "$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')" "$VERSION" "$CALLS" "$CLIENTS" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for run in $(seq 1 "$RUNS"); do
    held_before=$(cli HGET "$ACCOUNT" pc)
    fn=$(bench "ca_v${VERSION}_authorize")
    held_after=$(cli HGET "$ACCOUNT" pc)
    ref=$(bench reference)
    granted=$((held_after - held_before))
    printf 'run %s: authorize %s µs, reference %s µs of Redis CPU per call (%s holds granted)\n' \
        "$run" "$fn" "$ref" "$granted"
    [ "$granted" -ge $((CALLS * 99 / 100)) ] || die "only $granted of $CALLS calls were granted"
    results+=("$fn $ref")
    # The stream and the expiry index (every call expires in one second here).
    cli DEL '{bench:p0}:events' '{bench:p0}:x' '{bench:p0}:xn' >/dev/null
    cli --scan --pattern '{bench:p0}:x:*' | while read -r key; do cli DEL "$key" >/dev/null; done
done
# Where the Function's time goes: the commands it called, per authorize call
# (INFO commandstats counts commands run inside Functions too).
if [ -n "${COMMANDSTATS:-}" ]; then
    cli CONFIG RESETSTAT >/dev/null
    bench "ca_v${VERSION}_authorize" >/dev/null
    cli INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v n="$CALLS" '/^cmdstat_/ {
        printf "  %-22s %8.2f calls/authorize %8.2f µs each %8.2f µs/authorize\n", $1, $3 / n, $7, $5 / n }'
fi
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'; }
fn_median=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | median)
ref_median=$(printf '%s\n' "${results[@]}" | cut -d' ' -f2 | median)
fn_range=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | sort -n | sed -n '1p;$p' | paste -sd' ')
printf 'authorize: median %s µs (range %s); reference: median %s µs; ratio %s\n' \
    "$fn_median" "$fn_range" "$ref_median" "$(awk -v a="$fn_median" -v b="$ref_median" 'BEGIN { printf "%.2f", a / b }')"
