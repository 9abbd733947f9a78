#!/usr/bin/env bash
# Throughput of the person summary and the server's CPU per request, in one run:
# starts `carerecord demo` on DATABASE_URL, runs `bench-http` (the /health phase, then
# the person phase) against it, and samples the server's CPU time (utime + stime from
# /proc) every half second; the CPU per request is taken over the person phase's
# middle 8 seconds (it is the last 10 s of the run).
#
#   scripts/http_cpu_per_request.sh target/release/carerecord sqlite:///tmp/bench/m1.db
#
# The dataset must be `seed --people 1000000 --seed 1 --as-of 2026-11-25`. Linux only
# (reads /proc). Run two binaries alternately: this machine's noise is larger than most
# effects (docs/BENCHMARKS.md).
set -euo pipefail
BIN=$1
DB=$2
PORT=${PORT:-18090}
export CARE_DEMO_PASSWORD=${CARE_DEMO_PASSWORD:-Bench-Tangerine-2026}
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
CARE_HTTP_ADDR=127.0.0.1:$PORT CARE_SIGN_IN_PER_MINUTE_PER_ADDRESS=1000 \
  "$BIN" --database "$DB" demo >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
  sleep 0.3
done
"$BIN" bench-http --people 1000000 --seed 1 --as-of 2026-11-25 \
  --url "http://127.0.0.1:$PORT" --concurrency "${CONCURRENCY:-32}" --seconds 10 \
  >"$WORK/bench.out" 2>&1 &
CLIENT=$!
while kill -0 "$CLIENT" 2>/dev/null; do
  echo "$(date +%s.%N) $(awk '{print $14 + $15}' "/proc/$SERVER/stat")" >>"$WORK/ticks"
  sleep 0.5
done
wait "$CLIENT"
cat "$WORK/bench.out"
RATE=$(grep 'people/{id}' "$WORK/bench.out" | head -1 | awk '{print $3}')
python3 - "$RATE" "$WORK/ticks" "$(getconf CLK_TCK)" <<'PY'
import sys
rate, ticks_file, hz = float(sys.argv[1]), sys.argv[2], float(sys.argv[3])
rows = [tuple(map(float, line.split())) for line in open(ticks_file)]
end = rows[-1][0]
window = [r for r in rows if end - 9 <= r[0] <= end - 1]
cores = (window[-1][1] - window[0][1]) / hz / (window[-1][0] - window[0][0])
print(f"server: {cores:.2f} cores, {cores / rate * 1e6:.0f} µs of CPU per person request")
PY
