#!/usr/bin/env bash
# Throughput of HL7 v2 batches over HTTP and the server's CPU per message, in one run:
# starts `carerecord demo` on a fresh SQLite file, runs `bench-feed` (HTTP batches of
# 500, 4 connections) against it, and reads the server's CPU time (utime + stime from
# /proc) before and after; also the largest write-ahead log seen (sampled every 0.25 s).
#
#   scripts/feed_cpu_per_message.sh target/release/carerecord [messages]
#
# Linux only (reads /proc). Run two binaries alternately: this machine's noise is larger
# than most effects (docs/BENCHMARKS.md).
set -euo pipefail
BIN=$1
MESSAGES=${2:-40000}
PORT=${PORT:-18099}
export CARE_DEMO_PASSWORD=${CARE_DEMO_PASSWORD:-Bench-Tangerine-2026}
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
CARE_DATABASE_URL=sqlite://$WORK/f.db CARE_HTTP_ADDR=127.0.0.1:$PORT \
  "$BIN" demo >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
  sleep 0.3
done
before=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
"$BIN" bench-feed --url "http://127.0.0.1:$PORT" --messages "$MESSAGES" \
  --connections "${CONNECTIONS:-4}" --batch 500 --offset 1000 >"$WORK/bench.out" 2>&1 &
CLIENT=$!
largest=0
while kill -0 "$CLIENT" 2>/dev/null; do
  size=$(stat -c %s "$WORK/f.db-wal" 2>/dev/null || echo 0)
  [ "$size" -gt "$largest" ] && largest=$size
  sleep 0.25
done
wait "$CLIENT"
after=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
cat "$WORK/bench.out"
python3 - "$before" "$after" "$(getconf CLK_TCK)" "$MESSAGES" "$largest" <<'PY'
import sys
before, after, hz, messages, largest = map(float, sys.argv[1:])
print(f"server: {(after - before) / hz / messages * 1e6:.0f} µs of CPU per message "
      f"(whole run), largest log {largest / 1e6:.1f} MB")
PY
