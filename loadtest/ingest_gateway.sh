#!/usr/bin/env bash
# Issue 13.3: ingest with a gateway running on the same machine.
#
#   loadtest/ingest_gateway.sh COMMAND...     e.g. loadtest/ingest_gateway.sh loadtest/ingest_ab.py 3 100000 a=BIN b=BIN
#
# Starts a release callauth-gateway (--demo) on the local Redis under its own
# key prefix, puts callauth-loadtest's mix on it at RATE (300) whole calls/s
# for LOAD_SECONDS (240), runs COMMAND meanwhile, waits for the load to end,
# prints the gateway's CPU seconds and the load's report, stops the gateway
# and unlinks its keys. BIN: the directory of the release binaries
# (default: $CARGO_TARGET_DIR/release or target/release).
set -u
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
RATE=${RATE:-300}
PREFIX="ingestgw$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=$(free_port); H=$(free_port)
CODE_KEY=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
env RUST_LOG=warn $BIN/callauth-gateway --demo --store redis://127.0.0.1:6379 --redis-prefix "$PREFIX" \
  --prepaid-code-key "$CODE_KEY" --usage-clock-skew-seconds 14400 \
  --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H > /tmp/ingest-gateway-$$.log 2>&1 &
GW=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:$H/readyz >/dev/null 2>&1 && break; sleep 0.2; done
$BIN/callauth-loadtest run --scenario mix --endpoint http://127.0.0.1:$G --connections 2 --rate "$RATE" \
  --duration ${LOAD_SECONDS:-240} --warmup-seconds 2 --drain-seconds 5 > /tmp/ingest-gateway-load-$$.txt 2>&1 &
LT=$!
for i in $(seq 1 300); do grep -q '^setup:' /tmp/ingest-gateway-load-$$.txt 2>/dev/null && break; sleep 0.2; done
sleep 5
echo "gateway pid $GW on $G, load pid $LT at $RATE calls/s"
"$@"
wait $LT
G_CPU=$(awk '{print ($14+$15)/100}' /proc/$GW/stat)
echo "gateway CPU seconds over the session: $G_CPU"
kill $GW; wait $GW 2>/dev/null
redis-cli --scan --pattern "{$PREFIX*" | xargs -r redis-cli unlink > /dev/null
grep -v "^\s*$" /tmp/ingest-gateway-load-$$.txt | head -30
