#!/usr/bin/env bash
# The many-channels scenario against the machine's own ceiling, in one run:
#   1. `loadgen loopback-ceiling`: no server at all, one writer thread and one
#      reader thread passing 100-byte messages over CEIL_N loopback
#      connections, one write() and one read per message, at rising rates:
#      what any server plus client can carry here when every delivery is its
#      own write;
#   2. halley (release, fresh) with MC_N SSE subscribers over MC_CH channels,
#      loadgen publishing to random channels through the RESP port
#      (pipelined, the cheapest publisher loadgen has, so the publisher is not
#      what runs out first), at the rates in MC_STEPS.
# Each delivery in this scenario is its own write: a subscriber's channel gets
# a message every MC_CH / rate seconds, far longer than a batch.
#
#   cargo build --release --workspace && bench/many_channels_ceiling.sh
#
# Output: $OUT/ceiling.json, $OUT/halley.json (loadgen --json) and a summary on
# stdout. Ports: halley 127.0.0.1:8080 (subscribers), 8081 (ingest), 6380 (RESP).
set -euo pipefail
cd "$(dirname "$0")/.."
CEIL_N=${CEIL_N:-5000}
CEIL_STEPS=${CEIL_STEPS:-50000,100000,150000,200000,250000}
MC_N=${MC_N:-10000}
MC_CH=${MC_CH:-1000}
MC_STEPS=${MC_STEPS:-5000,10000,15000,20000,25000}
STEP_SECS=${STEP_SECS:-8}
HALLEY=${HALLEY:-target/release/halley}
LOADGEN=${LOADGEN:-target/release/loadgen}
OUT=${OUT:-/tmp/halley-many-channels-ceiling/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
ulimit -n 20000

for port in 8080 8081 6380; do
    if ss -ltnH "sport = :$port" | grep -q .; then
        echo "port $port is taken: stop what listens there first" >&2
        exit 2
    fi
done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. loopback ceiling: $LOADGEN loopback-ceiling --connections $CEIL_N --rate-steps $CEIL_STEPS --duration 5"
"$LOADGEN" loopback-ceiling --connections "$CEIL_N" --rate-steps "$CEIL_STEPS" --duration 5 | tee "$OUT/ceiling.txt"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$HALLEY" --listen 127.0.0.1:8080 --ingest 127.0.0.1:8081 --resp 127.0.0.1:6380 --threads 2 \
    --max-connections 19500 --backlog 4096 --log-level warn >"$OUT/halley.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
    curl -fsS http://127.0.0.1:8081/healthz >/dev/null 2>&1 && break
    sleep 0.05
done
cmd=("$LOADGEN" --json --workers 2 --source-addrs 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
    --sub-url 'http://127.0.0.1:8080/sub/{ch}' --transport sse --subscribers "$MC_N" --channels "$MC_CH"
    --connect-rate 2000 --pub-resp 127.0.0.1:6380 --pub-conns 8 --pub-pipeline 256 --target random
    --rate-steps "$MC_STEPS" --duration "$STEP_SECS" --pid "$pid")
echo "== 2. halley, $MC_N SSE subscribers over $MC_CH channels, RESP publishing: ${cmd[*]}"
"${cmd[@]}" >"$OUT/halley.json"
kill "$pid"; wait "$pid" 2>/dev/null || true
trap - EXIT

python3 - "$OUT/halley.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("rate/s   published  publish errors  lost  deliveries/s  p50 ms  p99 ms  server CPU s  loadgen CPU s")
for s in d["steps"]:
    l = s["latency_ms"]
    print(f'{s["rate"]:>6.0f}  {s["published"]:>9}  {s["publish_errors"]:>14}  {s["lost"]:>4}  '
          f'{s["deliveries_per_sec"]:>12.0f}  {l["p50"]:>6.1f}  {l["p99"]:>6.1f}  {s["server_cpu_secs"]:>12}  {s["loadgen_cpu_secs"]:>13}')
print(f'server CPU {d["server"]["cpu_secs"]} s, loadgen CPU {d["loadgen"]["cpu_secs"]} s over the run')
EOF
echo "results in $OUT"
