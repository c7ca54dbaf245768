#!/usr/bin/env bash
# Plain and TLS side by side in one run, with loadgen (--tls-ca for the TLS
# runs): a connect storm of ST_N SSE subscribers, BC_N subscribers on one
# channel at BC_RATE msg/s (p99, deliveries/s, nothing lost), and IDLE_N idle
# subscribers (server RSS). A fresh halley (release) per run, then (with
# SERVERS="halley nchan", when nginx and its nchan module are installed) a
# fresh Nchan per run: bench/nchan/nginx.conf plus an `ssl` listener on
# 127.0.0.1:8453 with the same certificate (ECDSA P-256 from a throwaway CA
# made here with openssl), a shared session cache and X25519 first.
#
#   cargo build --release --workspace && bench/tls_side_by_side.sh
#
# Output: one loadgen text report per run under $OUT (default
# bench/results/tls-<date>/), and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ST_N=${ST_N:-10000}
BC_N=${BC_N:-10000}
BC_RATE=${BC_RATE:-10}
BC_SECS=${BC_SECS:-10}
IDLE_N=${IDLE_N:-19000}
SERVERS=${SERVERS:-halley nchan}
WORKERS=${WORKERS:-2}
HALLEY=${HALLEY:-target/release/halley}
LOADGEN=${LOADGEN:-target/release/loadgen}
OUT=${OUT:-bench/results/tls-$(date +%Y-%m-%d)}
mkdir -p "$OUT"
ulimit -n 20000

pki=$(mktemp -d)
trap 'rm -rf "$pki"' EXIT
(
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
        -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout key.pem -out srv.csr
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >ext
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out cert.pem
) >/dev/null 2>&1

# Nchan's config: the compare.sh one with an ssl listener beside the plain one.
nchan_conf() {
    sed -e "s#listen 127.0.0.1:8090 reuseport backlog=4096;#&\n        listen 127.0.0.1:8453 ssl reuseport backlog=4096;\n        ssl_certificate $pki/cert.pem;\n        ssl_certificate_key $pki/key.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_ecdh_curve X25519:prime256v1:secp384r1;\n        ssl_session_cache shared:SSL:20m;#" \
        bench/nchan/nginx.conf >"$pki/nginx.conf"
    grep -q 'listen 127.0.0.1:8453 ssl' "$pki/nginx.conf"
}

# run_nchan MODE NAME LOADGEN-ARGS...: a fresh Nchan, one loadgen run
run_nchan() {
    local mode=$1 name=$2; shift 2
    local url=http://127.0.0.1:8090 tls=()
    [ "$mode" = tls ] && url=https://localhost:8453 tls=(--tls-ca "$pki/ca.pem")
    local prefix=$pki/nginx
    rm -rf "$prefix"; mkdir -p "$prefix/logs" "$prefix/temp"
    nginx -p "$prefix/" -c "$pki/nginx.conf" -e logs/error.log >"$prefix/out" 2>&1 &
    local pid=$!
    for _ in $(seq 1 200); do
        curl -fsS http://127.0.0.1:8090/healthz >/dev/null 2>&1 && break
        sleep 0.05
    done
    local pids=(--pid "$pid") w
    for w in $(pgrep -P "$pid"); do pids+=(--pid "$w"); done
    "$LOADGEN" --sub-url "$url/sub/{ch}" "${tls[@]}" --workers "$WORKERS" \
        --pub-url "http://127.0.0.1:8090/pub/{ch}" "${pids[@]}" "$@" >"$OUT/$name.nchan-$mode.txt" 2>&1 || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "== $name (nchan $mode)"
    grep -E 'connected after|deliveries/s|rss KiB|^ +[0-9]' "$OUT/$name.nchan-$mode.txt" || tail -3 "$OUT/$name.nchan-$mode.txt"
}

# run MODE NAME LOADGEN-ARGS...: a fresh halley, one loadgen run, its report in $OUT/NAME.MODE.txt
run() {
    local mode=$1 name=$2; shift 2
    local flags=() url=http://127.0.0.1 tls=()
    if [ "$mode" = tls ]; then
        flags=(--tls-cert "$pki/cert.pem" --tls-key "$pki/key.pem")
        url=https://localhost tls=(--tls-ca "$pki/ca.pem")
    fi
    local log
    log=$(mktemp)
    "$HALLEY" --listen 127.0.0.1:0 --ingest 127.0.0.1:0 --resp 127.0.0.1:0 "${flags[@]}" 2>"$log" &
    local pid=$!
    local line=""
    for _ in $(seq 1 200); do
        line=$(grep -m1 'listening public=' "$log" || true)
        [ -n "$line" ] && break
        sleep 0.05
    done
    local public ingest
    public=$(sed -E 's/.*public=([^ ]+).*/\1/' <<<"$line")
    ingest=$(sed -E 's/.*ingest=([^ ]+).*/\1/' <<<"$line")
    "$LOADGEN" --sub-url "$url:${public##*:}/sub/{ch}" "${tls[@]}" --workers "$WORKERS" \
        --pub-url "http://$ingest/pub/{ch}" --pid "$pid" "$@" >"$OUT/$name.$mode.txt" 2>&1 || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    echo "== $name ($mode)"
    grep -E 'connected after|deliveries/s|rss KiB|^ +[0-9]' "$OUT/$name.$mode.txt" || tail -3 "$OUT/$name.$mode.txt"
}

scenarios() { # SERVER-RUN MODE
    local run=$1 mode=$2
    "$run" "$mode" connect-storm --transport sse --subscribers "$ST_N" --channels 100 --connect-rate 0 \
        --no-publish --duration 3
    "$run" "$mode" broadcast --transport sse --subscribers "$BC_N" --channels 1 --connect-rate 2000 \
        --target ch0 --rate "$BC_RATE" --duration "$BC_SECS" --settle 3
    "$run" "$mode" idle --transport sse --subscribers "$IDLE_N" --channels 100 --connect-rate 2000 \
        --no-publish --duration 5
}

for server in $SERVERS; do
    case $server in
        halley) for mode in plain tls; do scenarios run "$mode"; done ;;
        nchan)
            if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
                echo "== nchan skipped: nginx with the nchan module is not installed (bench/compare.sh installs it)"
                continue
            fi
            nchan_conf
            for mode in plain tls; do scenarios run_nchan "$mode"; done ;;
    esac
done
