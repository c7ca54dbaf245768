#!/usr/bin/env bash
# Side-by-side benchmark: halley, Nchan and Pushpin, one after another, on
# loopback, with the same loadgen scenarios. See bench/README.md.
#
#   bench/compare.sh [--quick] [--servers halley,nchan,pushpin] [scenario...]
#
# Servers: halley, nchan, pushpin (the default list), and halley-base: an older
# halley binary (HALLEY_BASE) started exactly like halley, for a before/after
# comparison in one run:
#   HALLEY_BASE=/path/to/halley-<rev> bench/compare.sh --servers halley-base,halley broadcast
#
# Scenarios (default: all, in this order):
#   idle            19,000 idle SSE subscribers: connect time, server RSS per connection
#   broadcast       10,000 SSE subscribers on one channel, publish rate stepped up
#   many-channels   10,000 SSE subscribers over 1,000 channels, publishes to random channels
#   longpoll-churn  5,000 long-poll clients re-polling after every message
#   connect-storm   10,000 SSE connections opened at once: time until all are subscribed
#   publish-rate    closed-loop publish rate, no subscribers: redis-benchmark (sequential and
#                   pipelined) against redis-server (always run first, as the reference) and
#                   halley's RESP port; loadgen publish-rate (one keep-alive connection, one
#                   request at a time) against halley's HTTP ingest and RESP ports, Nchan's
#                   /pub/{ch} and redis-server. Not run against Pushpin.
#   scale-out       only when named: one fresh redis-server, then halley as 1 node without
#                   --redis, 1, 2 and 3 nodes with --redis, and Nchan with nchan_redis_url on the
#                   same Redis; subscribers spread over the nodes, publishes round-robin through
#                   them: 10,000 subscribers on one channel at 10, 30, 60 msg/s, and 1,000
#                   subscribers over 100 channels at 1,000 publishes/s (the latency the
#                   backplane adds). --servers: halley = the four halley configurations,
#                   nchan = Nchan on Redis; pushpin and halley-base have no Redis mode here.
#   h2              only when named: HTTP/2 subscribers against HTTP/1.1 ones on halley, each on a
#                   fresh start: 10,000 SSE subscribers on one channel as 10,000 HTTP/1.1
#                   connections, then as 100 h2c connections of 100 streams (loadgen --h2-streams),
#                   broadcast at 10, 30, 60 msg/s; then request rates with nghttp2's h2load
#                   (50,000 polls answered at once, /sub/x?timeout=0): h2c -c 10 -m 10 against
#                   --h1 -c 10 and --h1 -c 100. Needs halley in --servers (the others have no
#                   HTTP/2 set up here) and the nghttp2-client package.
# --quick shrinks every scenario (1,000 subscribers, short steps) for a fast check.
#
# Results: bench/results/<date>-<scenario>[-quick].md plus the raw loadgen JSON
# next to it (<same stem>.<server>.json). Run state and server logs go to
# $BENCH_RUN (default /tmp/halley-bench/<timestamp>).
#
# Environment: LOADGEN, HALLEY (binaries; default target/release/*),
# HALLEY_BASE (the halley-base binary; required when that server is named),
# HALLEY_BASE_LABEL (its name in the reports; default: what follows "halley-"
# in the binary's file name, else the file name),
# CONNECT_RATE (paced connects/s for every scenario except connect-storm; 1000),
# BENCH_BUDGET_SECS (hard limit for the whole run; 1800 full, 600 quick),
# LOADGEN_WORKERS (loadgen worker processes; nproc), BENCH_NO_BUILD=1 (skip
# cargo build), BENCH_NO_INSTALL=1 (never apt-get; publish-rate needs the
# redis-server and redis-tools packages, h2 nghttp2-client), PUSHPIN_LONGPOLL=1 (run
# long-poll churn against Pushpin anyway; see README.md).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
ALL_SCENARIOS=(idle broadcast many-channels longpoll-churn connect-storm publish-rate)
ALL_SERVERS=(halley nchan pushpin)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

QUICK=0
SCENARIOS=()
SERVERS=("${ALL_SERVERS[@]}")
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --servers) shift; IFS=, read -r -a SERVERS <<<"${1:?--servers needs a list}" ;;
        --servers=*) IFS=, read -r -a SERVERS <<<"${1#--servers=}" ;;
        -h|--help) usage; exit 0 ;;
        idle|broadcast|many-channels|longpoll-churn|connect-storm|publish-rate|scale-out|h2) SCENARIOS+=("$1") ;;
        http2) SCENARIOS+=(h2) ;;
        many) SCENARIOS+=(many-channels) ;;
        longpoll) SCENARIOS+=(longpoll-churn) ;;
        storm) SCENARIOS+=(connect-storm) ;;
        publish) SCENARIOS+=(publish-rate) ;;
        *) echo "compare.sh: unknown argument '$1' (scenarios: ${ALL_SCENARIOS[*]}; try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SERVERS[@]}"; do
    case "$s" in
        halley|nchan|pushpin) ;;
        halley-base)
            if [ -z "${HALLEY_BASE:-}" ]; then
                echo "compare.sh: server halley-base needs HALLEY_BASE=<path to the older halley binary>" >&2; exit 2
            fi
            if [ ! -x "$HALLEY_BASE" ]; then
                echo "compare.sh: HALLEY_BASE=$HALLEY_BASE is not an executable file" >&2; exit 2
            fi ;;
        *) echo "compare.sh: unknown server '$s' (servers: ${ALL_SERVERS[*]} halley-base)" >&2; exit 2 ;;
    esac
done

LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
HALLEY=${HALLEY:-$ROOT/target/release/halley}
CONNECT_RATE=${CONNECT_RATE:-1000}
STAMP=$(date +%Y%m%d-%H%M%S)
DATE=$(date +%F)
RUN=${BENCH_RUN:-/tmp/halley-bench/$STAMP}
STATE=$RUN/state
RESULTS=$BENCH/results
SUFFIX=""; [ "$QUICK" = 1 ] && SUFFIX="-quick"
if [ "$QUICK" = 1 ]; then BUDGET=${BENCH_BUDGET_SECS:-600}; else BUDGET=${BENCH_BUDGET_SECS:-1800}; fi
mkdir -p "$RUN" "$STATE" "$RESULTS"
T0=$(date +%s)

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
# Seconds as m:ss, for progress lines.
clock() { printf '%d:%02d' $(( $1 / 60 )) $(( $1 % 60 )); }
die() { log "error: $*"; exit 1; }

# Several loopback source addresses for the subscribers' sockets: the ports of
# earlier scenarios linger in TIME_WAIT for 60 s and one address has ~28,000.
SOURCE_ADDRS=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4

# ---------------------------------------------------------------- scenarios
# Per scenario: subscribers, channels, transport-independent loadgen flags.
# Full sizes from the issue; --quick sizes for a fast end-to-end check.
if [ "$QUICK" = 1 ]; then
    IDLE_N=1000;  IDLE_HOLD=2
    BC_N=1000;    BC_STEPS=10,50,200;        STEP_SECS=2; SETTLE=1
    MC_N=1000;    MC_CH=100;  MC_STEPS=100,500,2000
    LP_N=500;     LP_STEPS=2,10
    ST_N=1000;    ST_HOLD=1
    PR_SECS=2;    PR_SEQ_N=10000;  PR_PIPE_N=300000
    SO_N=1000;    SO_STEPS=10,30;  SO_LAT_N=200; SO_LAT_CH=20; SO_STEP_SECS=2; SO_SETTLE=1
    H2_N=1000;    H2_STEPS=10,30;  H2LOAD_N=10000
else
    IDLE_N=19000; IDLE_HOLD=10
    # 10,000 subscribers x rate = deliveries/s: 20k .. 1M/s
    BC_N=10000;   BC_STEPS=2,5,10,20,50,100; STEP_SECS=10; SETTLE=3
    # 10 subscribers per channel: 5k .. 400k deliveries/s, 500 .. 40k publishes/s
    # (the publish path's goal is 250k deliveries/s here with nothing lost)
    MC_N=10000;   MC_CH=1000; MC_STEPS=500,1000,2000,5000,10000,25000,40000
    # one channel, 5,000 re-polling clients: 5k .. 100k deliveries/s
    LP_N=5000;    LP_STEPS=1,2,5,10,20
    ST_N=10000;   ST_HOLD=3
    # publish-rate: loadgen's measured seconds; redis-benchmark request counts
    # (sequential, and -c 50 -P 16): 3 to 60 s each at the rates seen so far
    # (sequential: redis-server ~15,000/s, halley ~900/s; pipelined ~300,000 to 1,200,000/s)
    PR_SECS=10;   PR_SEQ_N=50000;  PR_PIPE_N=3000000
    # scale-out: 10,000 subscribers on one channel spread over the nodes (30 msg/s
    # = 300,000 deliveries/s is the issue's lossless goal with Redis on); then
    # 1,000 subscribers over 100 channels at 1,000 publishes/s for the latency the
    # backplane adds. 8 s steps keep the five configurations within ~5 minutes (4.5 measured).
    SO_N=10000;   SO_STEPS=10,30,60; SO_LAT_N=1000; SO_LAT_CH=100; SO_STEP_SECS=8; SO_SETTLE=2
    # h2: the issue's 10,000 subscribers over 100 h2 connections against 10,000
    # HTTP/1.1 connections, at scale-out's broadcast rates (100k..600k deliveries/s);
    # h2load's request count is the one measured by hand in docs/benchmarks.md
    # (under a second per run at the ~50k..120k requests/s seen there).
    H2_N=10000;   H2_STEPS=10,30,60; H2LOAD_N=50000
fi
# h2: streams per HTTP/2 connection (halley allows 128; Chromium asks for 100).
H2_STREAMS=100
SO_LAT_STEPS=1000
# publish-rate: every publish carries a 64-byte payload to the one channel "ch",
# which nobody subscribes to; the pipelined shape is the issue's.
PR_PAYLOAD=64; PR_PIPE_C=50; PR_PIPE_P=16
# Criteria for "sustained" (report.py applies them to each step): nothing lost
# and p99 at most this. Long-poll gets 1 s: every delivery there includes the
# client's re-poll round trip, queued behind the other clients' re-polls.
P99_LIMIT_MS=100
LP_P99_LIMIT_MS=1000
# loadgen worker processes: one per core, so a single client thread reading
# 10,000 sockets after every broadcast is not the latency floor (halley,
# 10,000 subscribers, 10 msg/s, runs alternated: p50 93 and 163 ms with one
# worker, 38 and 66 ms with two).
LOADGEN_WORKERS=${LOADGEN_WORKERS:-$(nproc)}

# ---------------------------------------------------------------- helpers
CUR_SCEN=none      # the scenario a server is started for (names its log dir)
STARTED=()          # pids this script started (stopped on exit, by pid only)

steps_count() { local IFS=,; set -- $1; echo $#; }

# Poll until an HTTP GET returns 2xx, at most $2 seconds.
wait_http() {
    local url=$1 secs=${2:-30} end=$(( $(date +%s) + ${2:-30} ))
    while [ "$(date +%s)" -lt "$end" ]; do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$url not ready after ${secs}s"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
need_ports_free() {
    local p
    for p in "$@"; do port_free "$p" || die "port $p is in use (another server running?); not starting over it"; done
}

# Subscribe one SSE client to a probe channel and publish until it sees a
# message: the whole path (accept, subscribe, fan-out, write) works.
# $1 subscriber URL, rest: the publish command with @MSG@ for the payload.
probe_pubsub() {
    local sub=$1; shift
    local out=$STATE/probe.out i arg cmd
    : >"$out"
    curl -sN --max-time 20 -H 'Accept: text/event-stream' "$sub" >"$out" 2>/dev/null &
    local cpid=$!
    for i in $(seq 1 100); do
        cmd=()
        for arg in "$@"; do cmd+=("${arg//@MSG@/probe-$i}"); done
        "${cmd[@]}" >/dev/null 2>&1 || true
        if grep -q 'probe-' "$out"; then kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null || true; return 0; fi
        sleep 0.2
    done
    kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null || true
    die "probe subscriber at $sub never received a published message"
}

# Drop one pid from STARTED (exact match) once it is gone.
forget_pid() {
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

# Stop one pid we started: TERM, poll until gone (10 s), then KILL.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid ignored TERM for 10 s; KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}

# Wait until no established connections to the port remain (the previous
# scenario's subscribers are gone), at most 30 s.
wait_drained() {
    local port=$1 i n
    for i in $(seq 1 300); do
        n=$(ss -Htn state established "( sport = :$port )" | wc -l)
        [ "$n" -le 2 ] && return 0
        sleep 0.1
    done
    log "warning: $n connections to :$port still open after 30 s"
}

SERVER_PIDS=()      # pids whose CPU and RSS loadgen samples (--pid)
SERVER_STOP=()      # pids to stop when the server's scenarios are done

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    STARTED=()
    if [ -n "${WATCHDOG:-}" ]; then     # the watchdog subshell and its sleep
        kill $(pgrep -P "$WATCHDOG") "$WATCHDOG" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'log "interrupted (or over the ${BUDGET}s budget): stopping servers"; exit 130' INT TERM

# --------------------------------------------------------------- install
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${BENCH_NO_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]} (BENCH_NO_INSTALL=1)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d-less containers may start the system services: we stop
    # nothing we did not start, so make sure they are not started at all.
    local prc=/usr/sbin/policy-rc.d made_prc=0
    if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod +x "$prc"; made_prc=1; fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 \
        || { [ $made_prc = 1 ] && rm -f "$prc"; die "apt-get install failed; see $STATE/apt.log"; }
    [ $made_prc = 1 ] && rm -f "$prc"
    return 0
}

# The reports' charts (report.py, bench/charts.py) are drawn with matplotlib.
# Without it the reports are written without charts, with a warning.
install_plotting() {
    python3 -c 'import matplotlib' >/dev/null 2>&1 && return 0
    if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
        log "warning: matplotlib is missing (BENCH_NO_INSTALL=1): reports without charts"; return 0
    fi
    log "installing matplotlib (pip) for the reports' charts"
    local pip=(python3 -m pip install --quiet --disable-pip-version-check matplotlib)
    # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise.
    "${pip[@]}" >"$STATE/pip.log" 2>&1 || "${pip[@]}" --break-system-packages >>"$STATE/pip.log" 2>&1 \
        || log "warning: pip install matplotlib failed (see $STATE/pip.log): reports without charts"
}

# ---------------------------------------------------------------- servers
# Each start_* fills SERVER_PIDS (sampled by loadgen), SERVER_STOP (stopped
# afterwards), SUB_URL, PUB_URL, PUB_FORMAT, LP_URL (empty: no long-poll) and
# PORT (subscriber port, for wait_drained); writes the start command to
# $STATE/server.<name>.<scenario>.cmd.

# start_halley_binary NAME BINARY: halley and halley-base start the same way.
start_halley_binary() {
    local name=$1 bin=$2
    need_ports_free 8080 8081 6380
    local cmd=("$bin" --listen 127.0.0.1:8080 --ingest 127.0.0.1:8081 --resp 127.0.0.1:6380
               --threads 2 --max-connections 19500 --backlog 4096 --log-level warn)
    { printf 'ulimit -Sn 20000; '; printf '%q ' "${cmd[@]}"; } >"$STATE/server.$name.$CUR_SCEN.cmd"
    ( ulimit -Sn 20000; exec "${cmd[@]}" ) >"$RUN/$name-$CUR_SCEN.log" 2>&1 &
    local pid=$!; STARTED+=("$pid")
    wait_http http://127.0.0.1:8081/healthz 30
    probe_pubsub http://127.0.0.1:8080/sub/probe curl -fsS -d @MSG@ http://127.0.0.1:8081/pub/probe
    SERVER_PIDS=("$pid"); SERVER_STOP=("$pid")
    SUB_URL='http://127.0.0.1:8080/sub/{ch}'; LP_URL=$SUB_URL
    PUB_URL='http://127.0.0.1:8081/pub/{ch}'; PUB_FORMAT=raw; PORT=8080; RESP_PORT=6380
}

start_halley() { start_halley_binary halley "$HALLEY"; }

# scale-out: node k's ports (subscribers, ingest, RESP); node 1 has halley's usual ones.
SO_NODE_PORTS=("8080 8081 6380" "8180 8181 6480" "8280 8281 6580")
SO_REDIS_PORT=''
# start_halley_nodes NAME NODES REDIS(0|1): NODES fresh halley processes, each
# with its own ports and the same flags as start_halley (plus --redis).
# SUB_URL and PUB_URL list every node ('|'-separated, loadgen/CONTRACT.md).
start_halley_nodes() {
    local name=$1 nodes=$2 redis=$3 k lp ip rp pid pids=() subs=() pubs=() cmdf=$STATE/server.$1.scale-out.cmd
    : >"$cmdf"
    for (( k = 0; k < nodes; k++ )); do
        read -r lp ip rp <<<"${SO_NODE_PORTS[$k]}"
        need_ports_free "$lp" "$ip" "$rp"
        local cmd=("$HALLEY" --listen "127.0.0.1:$lp" --ingest "127.0.0.1:$ip" --resp "127.0.0.1:$rp"
                   --threads 2 --max-connections 19500 --backlog 4096 --log-level warn)
        [ "$redis" = 1 ] && cmd+=(--redis "redis://127.0.0.1:$SO_REDIS_PORT")
        { printf '(ulimit -Sn 20000; exec '; printf '%q ' "${cmd[@]}"; printf ') &\n'; } >>"$cmdf"
        ( ulimit -Sn 20000; exec "${cmd[@]}" ) >"$RUN/$name-scale-out-node$(( k + 1 )).log" 2>&1 &
        pid=$!; STARTED+=("$pid"); pids+=("$pid")
        subs+=("http://127.0.0.1:$lp/sub/{ch}"); pubs+=("http://127.0.0.1:$ip/pub/{ch}")
    done
    for (( k = 0; k < nodes; k++ )); do
        read -r lp ip rp <<<"${SO_NODE_PORTS[$k]}"
        wait_http "http://127.0.0.1:$ip/healthz" 30
        # Subscribe on node k, publish on node 1: the path across the backplane works.
        probe_pubsub "http://127.0.0.1:$lp/sub/probe" curl -fsS -d @MSG@ http://127.0.0.1:8081/pub/probe
    done
    SERVER_PIDS=("${pids[@]}"); SERVER_STOP=("${pids[@]}")
    SUB_URL=$(IFS='|'; echo "${subs[*]}"); LP_URL=$SUB_URL
    PUB_URL=$(IFS='|'; echo "${pubs[*]}"); PUB_FORMAT=raw; PORT=8080; RESP_PORT=''
}
start_halley_1() { start_halley_nodes halley-1 1 0; }
start_halley_1_redis() { start_halley_nodes halley-1-redis 1 1; }
start_halley_2_redis() { start_halley_nodes halley-2-redis 2 1; }
start_halley_3_redis() { start_halley_nodes halley-3-redis 3 1; }

# Nchan in Redis mode (bench/nchan/nginx-redis.conf with the run's Redis URL).
start_nchan_redis() {
    need_ports_free 8090
    local prefix=$RUN/nginx/$CUR_SCEN
    mkdir -p "$prefix/logs" "$prefix/temp"
    sed "s#@REDIS_URL@#redis://127.0.0.1:$SO_REDIS_PORT#" "$BENCH/nchan/nginx-redis.conf" >"$prefix/nginx-redis.conf"
    local cmd=(nginx -p "$prefix/" -c "$prefix/nginx-redis.conf" -e logs/error.log)
    { printf 'ulimit -Sn 20000; '; printf '%q ' "${cmd[@]}"; } >"$STATE/server.nchan-redis.$CUR_SCEN.cmd"
    ( ulimit -Sn 20000; exec "${cmd[@]}" ) >"$prefix/nginx.out" 2>&1 &
    local pid=$!; STARTED+=("$pid")
    wait_http http://127.0.0.1:8090/healthz 30
    probe_pubsub http://127.0.0.1:8090/sub/probe curl -fsS -d @MSG@ http://127.0.0.1:8090/pub/probe
    local workers
    workers=$(pgrep -P "$pid" | tr '\n' ' ')
    [ -n "$workers" ] || die "nginx master $pid has no workers"
    # shellcheck disable=SC2206
    SERVER_PIDS=("$pid" $workers); SERVER_STOP=("$pid")
    SUB_URL='http://127.0.0.1:8090/sub/{ch}'; LP_URL=$SUB_URL
    PUB_URL='http://127.0.0.1:8090/pub/{ch}'; PUB_FORMAT=raw; PORT=8090; RESP_PORT=''
}
start_halley_base() { start_halley_binary halley-base "$HALLEY_BASE"; }

start_nchan() {
    need_ports_free 8090
    local prefix=$RUN/nginx/$CUR_SCEN
    mkdir -p "$prefix/logs" "$prefix/temp"
    local cmd=(nginx -p "$prefix/" -c "$BENCH/nchan/nginx.conf" -e logs/error.log)
    { printf 'ulimit -Sn 20000; '; printf '%q ' "${cmd[@]}"; } >"$STATE/server.nchan.$CUR_SCEN.cmd"
    ( ulimit -Sn 20000; exec "${cmd[@]}" ) >"$prefix/nginx.out" 2>&1 &     # daemon off: $! is the master
    local pid=$!; STARTED+=("$pid")
    wait_http http://127.0.0.1:8090/healthz 30
    probe_pubsub http://127.0.0.1:8090/sub/probe curl -fsS -d @MSG@ http://127.0.0.1:8090/pub/probe
    local workers
    workers=$(pgrep -P "$pid" | tr '\n' ' ')
    [ -n "$workers" ] || die "nginx master $pid has no workers"
    # shellcheck disable=SC2206
    SERVER_PIDS=("$pid" $workers); SERVER_STOP=("$pid")
    SUB_URL='http://127.0.0.1:8090/sub/{ch}'; LP_URL=$SUB_URL
    PUB_URL='http://127.0.0.1:8090/pub/{ch}'; PUB_FORMAT=raw; PORT=8090; RESP_PORT=''
}

start_pushpin() {
    need_ports_free 7999 5560 5561 5562 5563 8099
    local dir=$RUN/pushpin/$CUR_SCEN
    mkdir -p "$dir"
    local ocmd=(python3 "$BENCH/pushpin/origin.py" 8099)
    local cmd=(pushpin --config "$BENCH/pushpin/pushpin.conf")
    { printf '%q ' "${ocmd[@]}"; printf '&\n'; printf 'cd %q; ulimit -Sn 20000; ' "$dir"; printf '%q ' "${cmd[@]}"; } >"$STATE/server.pushpin.$CUR_SCEN.cmd"
    ( cd "$dir"; exec "${ocmd[@]}" ) >"$dir/origin.log" 2>&1 &
    local opid=$!; STARTED+=("$opid")
    wait_http http://127.0.0.1:8099/healthz 30
    # pushpin.conf's rundir/logdir are relative: they land in $dir.
    ( cd "$dir"; ulimit -Sn 20000; exec "${cmd[@]}" ) >"$dir/pushpin.out" 2>&1 &
    local pid=$!; STARTED+=("$pid")
    wait_http http://127.0.0.1:7999/healthz 30        # condure -> proxy -> zurl -> origin
    # Pushpin needs a moment after its ports answer: subscriptions made in the
    # first ~2 s were dropped (shared/peers-notes.md; its handler and proxy
    # connect over ZeroMQ, and subscriptions sent before those links are up are
    # lost). Ports answering is not the condition that matters and Pushpin
    # exposes no readiness signal for it, so this one wait is a fixed delay; the
    # probe below then checks the whole path end to end.
    sleep 2
    probe_pubsub http://127.0.0.1:7999/stream/probe curl -fsS -H 'Content-Type: application/json' \
        -d '{"items":[{"channel":"probe","formats":{"http-stream":{"content":"data: @MSG@\n\n"}}}]}' \
        http://127.0.0.1:5561/publish/
    local f p pids=()
    for f in condure zurl pushpin-proxy pushpin-handler; do
        p=$(cat "$dir/run/$f.pid" 2>/dev/null || true)
        [ -n "$p" ] && kill -0 "$p" 2>/dev/null || die "pushpin: $f is not running (see $dir/log)"
        pids+=("$p")
    done
    # Sampled: Pushpin's own four processes. Not the origin (stateless; any
    # real deployment has one of its own) nor the runner (it only supervises).
    SERVER_PIDS=("${pids[@]}"); SERVER_STOP=("$pid" "$opid")
    # Long-poll: the origin answers /lp/{ch} with Grip-Hold: response, but a
    # held response is completed only by a published item that carries an
    # http-response format, and loadgen's pushpin format carries http-stream
    # only (loadgen/CONTRACT.md); Pushpin also keeps no history to fill what
    # was published while a client re-polls. So long-poll churn is not run for
    # Pushpin unless PUSHPIN_LONGPOLL=1 (README.md, "Long-poll churn").
    SUB_URL='http://127.0.0.1:7999/stream/{ch}'; LP_URL=''
    [ "${PUSHPIN_LONGPOLL:-0}" = 1 ] && LP_URL='http://127.0.0.1:7999/lp/{ch}'
    PUB_URL='http://127.0.0.1:5561/publish/'; PUB_FORMAT=pushpin; PORT=7999; RESP_PORT=''
}

# redis-server, the reference of publish-rate: a private one on the first free
# port from 16379, nothing saved to disk, stopped by pid like the others.
start_redis() {
    local port=16379
    while ! port_free "$port"; do
        port=$(( port + 1 ))
        [ "$port" -le 16399 ] || die "no free port in 16379..16399 for redis-server"
    done
    local cmd=(redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no
               --protected-mode yes --logfile '')
    printf '%q ' "${cmd[@]}" >"$STATE/server.redis.$CUR_SCEN.cmd"
    ( exec "${cmd[@]}" ) >"$RUN/redis-$CUR_SCEN.log" 2>&1 &
    local pid=$!; STARTED+=("$pid")
    local end=$(( $(date +%s) + 30 ))
    until [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; do
        kill -0 "$pid" 2>/dev/null || die "redis-server exited; see $RUN/redis-$CUR_SCEN.log"
        [ "$(date +%s)" -lt "$end" ] || die "redis-server on :$port not ready after 30s"
        sleep 0.1
    done
    SERVER_PIDS=("$pid"); SERVER_STOP=("$pid")
    RESP_PORT=$port; PORT=$port; PUB_URL=''
}

stop_server() {
    local pid keep=()
    for pid in "${SERVER_STOP[@]}"; do stop_pid "$pid"; done
    # Pushpin's runner stops its children; make sure (by their pids) they went.
    for pid in "${SERVER_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then stop_pid "$pid"; fi
    done
    for pid in "${STARTED[@]}"; do
        kill -0 "$pid" 2>/dev/null && keep+=("$pid")
    done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------- loadgen
# run_loadgen SERVER SCENARIO EXPECTED_SECS ARGS...
run_loadgen() {
    local server=$1 scen=$2 secs=$3; shift 3
    local p pidargs=()
    for p in "${SERVER_PIDS[@]}"; do pidargs+=(--pid "$p"); done
    local cmd=("$LOADGEN" --json --label "$server-$scen" --workers "$LOADGEN_WORKERS" --source-addrs "$SOURCE_ADDRS"
               "$@" "${pidargs[@]}")
    local stem=$STATE/$scen.$server
    printf '%q ' "${cmd[@]}" >"$stem.cmd"
    local left=$(( BUDGET - ($(date +%s) - T0) ))
    local limit=$(( secs * 3 / 2 + 60 ))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        log "$server $scen: skipped, the ${BUDGET}s budget is used up"
        echo skipped >"$stem.rc"; return 0
    fi
    RUN_NO=$(( RUN_NO + 1 ))
    log "[$RUN_NO/$RUNS] $server $scen: about $(clock "$secs") (limit $(clock "$limit")); elapsed $(clock $(( $(date +%s) - T0 ))), budget left $(clock "$left")"
    cut -d' ' -f1-3 /proc/loadavg >"$stem.loadavg"
    local rc=0 lg
    # In the background and waited for, so an interrupt (or the watchdog) is
    # handled at once; timeout passes the TERM from cleanup on to loadgen.
    # loadgen's progress goes to our stderr (fd 3): a live line on a
    # terminal, a plain line per step otherwise; its own stderr is the log.
    ( ulimit -Sn 20000; exec timeout -k 10 "$limit" "${cmd[@]}" --progress /dev/fd/3 ) \
        3>&2 >"$stem.json" 2>"$stem.log" &
    lg=$!; STARTED+=("$lg")
    wait "$lg" || rc=$?
    forget_pid "$lg"
    echo "$rc" >"$stem.rc"
    [ "$rc" = 0 ] || log "$server $scen: loadgen exit $rc (see $stem.log)"
    return 0
}

# run_steps SERVER SCENARIO SUBSCRIBERS STEPS URL TRANSPORT CHANNELS TARGET:
# a scenario that publishes at each rate of STEPS in turn.
run_steps() {
    local server=$1 scen=$2 n=$3 steps=$4 url=$5 transport=$6 channels=$7 target=$8
    local secs=$(( n / CONNECT_RATE + $(steps_count "$steps") * (STEP_SECS + SETTLE) + 5 ))
    run_loadgen "$server" "$scen" "$secs" --sub-url "$url" --transport "$transport" \
        --subscribers "$n" --channels "$channels" --connect-rate "$CONNECT_RATE" \
        --pub-url "$PUB_URL" --pub-format "$PUB_FORMAT" --target "$target" \
        --rate-steps "$steps" --duration "$STEP_SECS" --settle "$SETTLE"
}

# run_measure SERVER MEASURE LIMIT_SECS CMD...: one publish-rate measurement,
# its stdout to $STATE/publish-rate.SERVER.MEASURE.out, bounded in time.
run_measure() {
    local server=$1 what=$2 secs=$3; shift 3
    local stem=$STATE/publish-rate.$server.$what
    printf '%q ' "$@" >"$stem.cmd"
    local left=$(( BUDGET - ($(date +%s) - T0) )) limit=$secs
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        log "$server publish-rate $what: skipped, the ${BUDGET}s budget is used up"
        echo skipped >"$stem.rc"; return 0
    fi
    log "$server publish-rate $what (limit ${limit}s)"
    cut -d' ' -f1-3 /proc/loadavg >"$stem.loadavg"
    local rc=0 pid
    ( exec timeout -k 10 "$limit" "$@" ) >"$stem.out" 2>"$stem.log" &
    pid=$!; STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    echo "$rc" >"$stem.rc"
    [ "$rc" = 0 ] || log "$server publish-rate $what: exit $rc (see $stem.log)"
    return 0
}

# The publish-rate measurements of one server (see the header and README.md).
run_publish_rate() {
    local server=$1 p pidargs=() payload
    for p in "${SERVER_PIDS[@]}"; do pidargs+=(--pid "$p"); done
    payload=$(printf 'x%.0s' $(seq "$PR_PAYLOAD"))
    local lg=("$LOADGEN" publish-rate --connections 1 --pipeline 1 --duration "$PR_SECS" --warmup 0.5
              --payload-bytes "$PR_PAYLOAD" --channel ch --json "${pidargs[@]}")
    local lg_limit=$(( PR_SECS + 30 )) rb_limit=$(( QUICK == 1 ? 60 : 150 ))
    if [ -n "${RESP_PORT:-}" ]; then
        # redis-benchmark: --csv prints one summary line (no progress output).
        run_measure "$server" rb-seq "$rb_limit" redis-benchmark -h 127.0.0.1 -p "$RESP_PORT" \
            -c 1 -n "$PR_SEQ_N" --csv PUBLISH ch "$payload"
        run_measure "$server" rb-pipe "$rb_limit" redis-benchmark -h 127.0.0.1 -p "$RESP_PORT" \
            -c "$PR_PIPE_C" -P "$PR_PIPE_P" -n "$PR_PIPE_N" --csv PUBLISH ch "$payload"
        run_measure "$server" lg-resp-seq "$lg_limit" "${lg[@]}" --label "$server-resp-seq" \
            --resp "127.0.0.1:$RESP_PORT"
    fi
    if [ -n "$PUB_URL" ]; then
        run_measure "$server" lg-http-seq "$lg_limit" "${lg[@]}" --label "$server-http-seq" --http "$PUB_URL"
    fi
}

# h2, one configuration: the broadcast steps with the subscribers as HTTP/1.1
# connections (halley-h1) or as HTTP/2 streams, H2_STREAMS per connection
# (halley-h2). --connect-rate paces connections, so the h2 subscribers
# arrive H2_STREAMS at a time.
run_h2() {
    local cfg=$1 secs h2args=()
    [ "$cfg" = halley-h2 ] && h2args=(--h2-streams "$H2_STREAMS")
    secs=$(( H2_N / CONNECT_RATE + $(steps_count "$H2_STEPS") * (STEP_SECS + SETTLE) + 5 ))
    run_loadgen "$cfg" h2 "$secs" --sub-url "$SUB_URL" --transport sse \
        --subscribers "$H2_N" --channels 1 --connect-rate "$CONNECT_RATE" "${h2args[@]+"${h2args[@]}"}" \
        --pub-url "$PUB_URL" --pub-format "$PUB_FORMAT" --target ch0 \
        --rate-steps "$H2_STEPS" --duration "$STEP_SECS" --settle "$SETTLE"
}

# A process's CPU time in clock ticks (utime + stime of /proc/<pid>/stat;
# the fields after the parenthesised name, which may hold spaces).
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }

# h2load request rates against the running halley: each measurement's output,
# command, exit status, load average before and halley's CPU ticks around it
# in $STATE/h2load.<key>.*. Keys and h2load options (the ones docs/benchmarks.md
# measured by hand): h2c with 10 streams in flight on each of 10 connections,
# HTTP/1.1 one request at a time (as browsers do) on 10 and on 100 connections.
H2LOAD_RUNS=("h2c-c10-m10|-c 10 -m 10" "h1-c10-m1|--h1 -c 10 -m 1" "h1-c100-m1|--h1 -c 100 -m 1")
run_h2load() {
    local spec key opts stem rc pid c0 left limit=120
    local url='http://127.0.0.1:8080/sub/x?timeout=0'
    for spec in "${H2LOAD_RUNS[@]}"; do
        key=${spec%%|*}
        read -r -a opts <<<"${spec#*|}"
        stem=$STATE/h2load.$key
        local cmd=(h2load -n "$H2LOAD_N" "${opts[@]}" "$url")
        printf '%q ' "${cmd[@]}" >"$stem.cmd"
        left=$(( BUDGET - ($(date +%s) - T0) ))
        if [ "$left" -le 5 ]; then
            log "h2load $key: skipped, the ${BUDGET}s budget is used up"; echo skipped >"$stem.rc"; continue
        fi
        [ "$limit" -gt "$left" ] && limit=$left
        log "h2load $key (limit ${limit}s)"
        cut -d' ' -f1-3 /proc/loadavg >"$stem.loadavg"
        c0=$(proc_ticks "${SERVER_PIDS[0]}")
        rc=0
        ( exec timeout -k 10 "$limit" "${cmd[@]}" ) >"$stem.out" 2>"$stem.log" &
        pid=$!; STARTED+=("$pid")
        wait "$pid" || rc=$?
        forget_pid "$pid"
        echo "$rc" >"$stem.rc"
        echo "$c0 $(proc_ticks "${SERVER_PIDS[0]}") $(getconf CLK_TCK)" >"$stem.cpu"
        [ "$rc" = 0 ] || log "h2load $key: exit $rc (see $stem.log)"
    done
}

# scale-out, one configuration: the broadcast steps, then the 1,000 publishes/s
# latency run (own channel prefix, so none of the first run's history is near).
run_scale_out() {
    local cfg=$1 secs
    secs=$(( SO_N / CONNECT_RATE + $(steps_count "$SO_STEPS") * (SO_STEP_SECS + SO_SETTLE) + 5 ))
    run_loadgen "$cfg" scale-out "$secs" --sub-url "$SUB_URL" --transport sse \
        --subscribers "$SO_N" --channels 1 --connect-rate "$CONNECT_RATE" \
        --pub-url "$PUB_URL" --pub-format "$PUB_FORMAT" --target ch0 \
        --rate-steps "$SO_STEPS" --duration "$SO_STEP_SECS" --settle "$SO_SETTLE"
    secs=$(( SO_LAT_N / CONNECT_RATE + $(steps_count "$SO_LAT_STEPS") * (SO_STEP_SECS + SO_SETTLE) + 5 ))
    run_loadgen "$cfg" scale-out-lat "$secs" --sub-url "$SUB_URL" --transport sse \
        --subscribers "$SO_LAT_N" --channels "$SO_LAT_CH" --channel-prefix lat --connect-rate "$CONNECT_RATE" \
        --pub-url "$PUB_URL" --pub-format "$PUB_FORMAT" --target random \
        --rate-steps "$SO_LAT_STEPS" --duration "$SO_STEP_SECS" --settle "$SO_SETTLE"
}

run_scenario() {
    local server=$1 scen=$2 n secs
    wait_drained "$PORT"
    case "$scen" in
        scale-out) run_scale_out "$server" ;;
        publish-rate) run_publish_rate "$server" ;;
        idle)
            n=$IDLE_N; secs=$(( n / CONNECT_RATE + IDLE_HOLD + 5 ))
            run_loadgen "$server" "$scen" "$secs" --sub-url "$SUB_URL" --transport sse \
                --subscribers "$n" --channels 100 --connect-rate "$CONNECT_RATE" \
                --no-publish --duration "$IDLE_HOLD" ;;
        broadcast) run_steps "$server" "$scen" "$BC_N" "$BC_STEPS" "$SUB_URL" sse 1 ch0 ;;
        many-channels) run_steps "$server" "$scen" "$MC_N" "$MC_STEPS" "$SUB_URL" sse "$MC_CH" random ;;
        longpoll-churn)
            if [ -z "$LP_URL" ]; then echo unsupported >"$STATE/$scen.$server.rc"; return 0; fi
            run_steps "$server" "$scen" "$LP_N" "$LP_STEPS" "$LP_URL" longpoll 1 ch0 ;;
        connect-storm)
            n=$ST_N; secs=$(( ST_HOLD + 30 ))
            run_loadgen "$server" "$scen" "$secs" --sub-url "$SUB_URL" --transport sse \
                --subscribers "$n" --channels 100 --connect-rate 0 \
                --no-publish --duration "$ST_HOLD" ;;
    esac
}

# ------------------------------------------------------------------- main
needs_nchan=0 needs_pushpin=0 use_base=0
for s in "${SERVERS[@]}"; do
    case "$s" in nchan) needs_nchan=1 ;; pushpin) needs_pushpin=1 ;; halley-base) use_base=1 ;; esac
done
needs_redis=0 needs_h2load=0
for s in "${SCENARIOS[@]}"; do
    [ "$s" = publish-rate ] || [ "$s" = scale-out ] && needs_redis=1
    [ "$s" = h2 ] && needs_h2load=1
done
# h2's configurations: halley only (subscribers as HTTP/1.1 connections, then as HTTP/2 streams).
H2_CONFIGS=()
for s in "${SERVERS[@]}"; do [ "$s" = halley ] && H2_CONFIGS=(halley-h1 halley-h2); done
[ ${#H2_CONFIGS[@]} -gt 0 ] || needs_h2load=0
# scale-out's configurations, from --servers: halley -> 1 node without Redis,
# 1, 2 and 3 nodes with it; nchan -> Nchan on the same Redis.
SO_CONFIGS=()
for s in "${SERVERS[@]}"; do
    case "$s" in
        halley) SO_CONFIGS+=(halley-1 halley-1-redis halley-2-redis halley-3-redis) ;;
        nchan) SO_CONFIGS+=(nchan-redis) ;;
    esac
done
packages=()
# Only what the named servers and scenarios use.
[ "$needs_nchan" = 1 ] && packages+=(nginx libnginx-mod-nchan)
[ "$needs_pushpin" = 1 ] && packages+=(pushpin)
[ "$needs_redis" = 1 ] && packages+=(redis-server redis-tools)
[ "$needs_h2load" = 1 ] && packages+=(nghttp2-client)
[ ${#packages[@]} -gt 0 ] && install_packages "${packages[@]}"
install_plotting

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --workspace"
    (cd "$ROOT" && cargo build --release --workspace >"$STATE/build.log" 2>&1) || die "build failed; see $STATE/build.log (BENCH_NO_BUILD=1 uses the binaries already in target/release)"
fi
[ -x "$LOADGEN" ] || die "no loadgen at $LOADGEN"
# How the reports name each server (report.py reads $STATE/label.<server>).
if [ "$use_base" = 1 ]; then
    base_name=$(basename "$HALLEY_BASE")
    case "$base_name" in halley-?*) base_rev=${base_name#halley-} ;; *) base_rev=$base_name ;; esac
    echo "halley (base ${HALLEY_BASE_LABEL:-$base_rev})" >"$STATE/label.halley-base"
fi
if ! "$LOADGEN" --help >/dev/null 2>&1; then
    die "$LOADGEN --help fails (still the placeholder?); nothing to measure with"
fi

# The whole run stops by itself: past the budget the watchdog interrupts it
# (servers are stopped by the EXIT trap) and report.py marks what is missing.
( sleep "$BUDGET"; kill -TERM $$ 2>/dev/null ) &
WATCHDOG=$!

# Versions and machine facts, once.
{
    echo "halley: $("$HALLEY" --version 2>&1 | head -1) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
    if [ "$use_base" = 1 ]; then
        echo "halley-base: $("$HALLEY_BASE" --version 2>&1 | head -1) (binary $HALLEY_BASE, shown as \"$(cat "$STATE/label.halley-base")\")"
    fi
    echo "loadgen: $LOADGEN (built from the same tree)"
    if [ "$needs_nchan" = 1 ]; then
        echo "nginx: $(nginx -v 2>&1 | head -1)"
        echo "nchan: libnginx-mod-nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null)"
    fi
    if [ "$needs_pushpin" = 1 ]; then
        echo "pushpin: $(pushpin --version 2>&1 | head -1) (Debian $(dpkg-query -W -f '${Version}' pushpin 2>/dev/null))"
        echo "condure: $(condure --version 2>&1 | head -1)"
        echo "zurl: $(zurl --version 2>&1 | head -1)"
        echo "origin: $(python3 --version 2>&1)"
    fi
    if [ "$needs_redis" = 1 ]; then
        echo "redis-server: $(redis-server --version 2>&1 | head -1) (Debian $(dpkg-query -W -f '${Version}' redis-server 2>/dev/null))"
        echo "redis-benchmark: $(redis-benchmark --version 2>&1 | head -1)"
    fi
    if [ "$needs_h2load" = 1 ]; then
        echo "h2load: $(h2load --version 2>&1 | head -1) (Debian nghttp2-client $(dpkg-query -W -f '${Version}' nghttp2-client 2>/dev/null))"
    fi
} >"$STATE/versions.txt"
{
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB total, " $7 " MiB available"}')"
    echo "os: Debian $(cat /etc/debian_version 2>/dev/null), kernel $(uname -r)"
    echo "fd limit: soft raised to 20000 for each server and loadgen (hard $(ulimit -Hn))"
    echo "sysctl: somaxconn $(sysctl -n net.core.somaxconn), tcp_max_syn_backlog $(sysctl -n net.ipv4.tcp_max_syn_backlog), ip_local_port_range $(sysctl -n net.ipv4.ip_local_port_range | tr '\t' '-'), tcp_tw_reuse $(sysctl -n net.ipv4.tcp_tw_reuse)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$STATE/machine.txt"
cat >"$STATE/params.env" <<EOF
QUICK=$QUICK
DATE=$DATE
CONNECT_RATE=$CONNECT_RATE
IDLE_N=$IDLE_N IDLE_HOLD=$IDLE_HOLD
BC_N=$BC_N BC_STEPS=$BC_STEPS
MC_N=$MC_N MC_CH=$MC_CH MC_STEPS=$MC_STEPS
LP_N=$LP_N LP_STEPS=$LP_STEPS
ST_N=$ST_N ST_HOLD=$ST_HOLD
H2_N=$H2_N H2_STEPS=$H2_STEPS H2_STREAMS=$H2_STREAMS H2LOAD_N=$H2LOAD_N
SO_N=$SO_N SO_STEPS=$SO_STEPS SO_LAT_N=$SO_LAT_N SO_LAT_CH=$SO_LAT_CH SO_LAT_STEPS=$SO_LAT_STEPS SO_STEP_SECS=$SO_STEP_SECS SO_SETTLE=$SO_SETTLE
PR_SECS=$PR_SECS PR_SEQ_N=$PR_SEQ_N PR_PIPE_N=$PR_PIPE_N PR_PAYLOAD=$PR_PAYLOAD PR_PIPE_C=$PR_PIPE_C PR_PIPE_P=$PR_PIPE_P
STEP_SECS=$STEP_SECS SETTLE=$SETTLE
P99_LIMIT_MS=$P99_LIMIT_MS LP_P99_LIMIT_MS=$LP_P99_LIMIT_MS
LOADGEN_WORKERS=$LOADGEN_WORKERS
EOF

log "run dir $RUN; servers: ${SERVERS[*]}; scenarios: ${SCENARIOS[*]}; budget ${BUDGET}s"
# Progress: runs done of all runs (one per scenario and server).
RUNS=0 RUN_NO=0
for s in "${SCENARIOS[@]}"; do
    case "$s" in
        scale-out) RUNS=$(( RUNS + 2 * ${#SO_CONFIGS[@]} )) ;;
        h2) RUNS=$(( RUNS + ${#H2_CONFIGS[@]} )) ;;
        *) RUNS=$(( RUNS + ${#SERVERS[@]} )) ;;
    esac
done
busy=$(awk -v n="$(nproc)" '{ print ($1 > n / 2) ? 1 : 0 }' /proc/loadavg)
[ "$busy" = 1 ] && log "warning: load average $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores before the run: other work shares the CPUs, expect noisy numbers (the reports record the load before each run)"

# Scenario by scenario, each server in turn on a fresh start: no scenario
# inherits another's leftovers (queues, sessions being torn down), and the
# three servers of one scenario run minutes apart, under similar background load.
for scen in "${SCENARIOS[@]}"; do
    if [ "$scen" = scale-out ]; then
        [ ${#SO_CONFIGS[@]} -gt 0 ] || { log "scale-out: nothing to run (--servers names neither halley nor nchan)"; continue; }
        # One redis-server for every configuration, emptied (FLUSHALL) between them.
        CUR_SCEN=$scen
        start_redis
        SO_REDIS_PORT=$RESP_PORT; redis_pid=${SERVER_PIDS[0]}
        echo "redis-server: $(redis-server --version | head -1), port $SO_REDIS_PORT, pid $redis_pid" >"$STATE/scale-out.redis.txt"
        for cfg in "${SO_CONFIGS[@]}"; do
            if [ $(( BUDGET - ($(date +%s) - T0) )) -le 30 ]; then
                log "$cfg $scen: skipped, the ${BUDGET}s budget is used up"
                echo skipped >"$STATE/$scen.$cfg.rc"; echo skipped >"$STATE/$scen-lat.$cfg.rc"; continue
            fi
            redis-cli -h 127.0.0.1 -p "$SO_REDIS_PORT" flushall >/dev/null
            log "starting $cfg for $scen"
            "start_${cfg//-/_}"
            log "$cfg ready (sampled pids: ${SERVER_PIDS[*]})"
            run_scenario "$cfg" "$scen"
            stop_server
            redis-cli -h 127.0.0.1 -p "$SO_REDIS_PORT" info commandstats >"$STATE/scale-out.$cfg.redis-stats.txt" 2>/dev/null || true
            redis-cli -h 127.0.0.1 -p "$SO_REDIS_PORT" config resetstat >/dev/null 2>&1 || true
        done
        stop_pid "$redis_pid"; forget_pid "$redis_pid"
        python3 "$BENCH/report.py" --state "$STATE" --scenario "$scen" --servers "$(IFS=,; echo "${SO_CONFIGS[*]}")" \
            --out "$RESULTS/$DATE-$scen$SUFFIX" >/dev/null || log "report for $scen failed"
        log "$scen: $RESULTS/$DATE-$scen$SUFFIX.md"
        continue
    fi
    if [ "$scen" = h2 ]; then
        [ ${#H2_CONFIGS[@]} -gt 0 ] || { log "h2: nothing to run (--servers does not name halley)"; continue; }
        CUR_SCEN=$scen
        for cfg in "${H2_CONFIGS[@]}"; do
            if [ $(( BUDGET - ($(date +%s) - T0) )) -le 30 ]; then
                log "$cfg $scen: skipped, the ${BUDGET}s budget is used up"; echo skipped >"$STATE/$scen.$cfg.rc"; continue
            fi
            log "starting $cfg for $scen"
            start_halley_binary "$cfg" "$HALLEY"
            log "$cfg ready (sampled pids: ${SERVER_PIDS[*]})"
            wait_drained "$PORT"
            run_h2 "$cfg"
            stop_server
        done
        log "starting halley-h2load for $scen (h2load request rates)"
        start_halley_binary halley-h2load "$HALLEY"
        wait_drained "$PORT"
        run_h2load
        stop_server
        python3 "$BENCH/report.py" --state "$STATE" --scenario "$scen" --servers "$(IFS=,; echo "${H2_CONFIGS[*]}")" \
            --out "$RESULTS/$DATE-$scen$SUFFIX" >/dev/null || log "report for $scen failed"
        log "$scen: $RESULTS/$DATE-$scen$SUFFIX.md"
        continue
    fi
    scen_servers=("${SERVERS[@]}")
    # publish-rate: redis-server first, the reference every ratio is taken to.
    [ "$scen" = publish-rate ] && scen_servers=(redis "${SERVERS[@]}")
    for server in "${scen_servers[@]}"; do
        if [ $(( BUDGET - ($(date +%s) - T0) )) -le 30 ]; then
            log "$server $scen: skipped, the ${BUDGET}s budget is used up"
            echo skipped >"$STATE/$scen.$server.rc"; continue
        fi
        if [ "$server.$scen" = pushpin.longpoll-churn ] && [ "${PUSHPIN_LONGPOLL:-0}" != 1 ]; then
            echo unsupported >"$STATE/$scen.$server.rc"; continue     # see start_pushpin
        fi
        if [ "$server.$scen" = pushpin.publish-rate ]; then
            echo unsupported >"$STATE/$scen.$server.rc"; continue     # see README.md, publish-rate
        fi
        log "starting $server for $scen"
        CUR_SCEN=$scen
        "start_${server//-/_}"
        log "$server ready (sampled pids: ${SERVER_PIDS[*]})"
        run_scenario "$server" "$scen"
        stop_server
    done
    python3 "$BENCH/report.py" --state "$STATE" --scenario "$scen" --servers "$(IFS=,; echo "${SERVERS[*]}")" \
        --out "$RESULTS/$DATE-$scen$SUFFIX" >/dev/null || log "report for $scen failed"
    log "$scen: $RESULTS/$DATE-$scen$SUFFIX.md"
done
log "done in $(( $(date +%s) - T0 ))s; results in $RESULTS/$DATE-*$SUFFIX.md"
