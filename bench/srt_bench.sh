#!/usr/bin/env bash
# SRT server benchmark (not a test, not run in CI):
#
# 1. CPU: one 10 Mbit/s synthetic SRT publish (H.264 in MPEG-TS, 25 fps,
#    7 TS packets per SRT payload) to $VIEWER_COUNTS SRT viewers on
#    loopback, all driven by `srt-load` (arcly's own SRT caller, one UDP
#    socket per viewer). The server is the release `arcly` binary (tokio UDP
#    driver); its CPU is read from /proc over the measurement window.
# 2. Latency added by the server at latency 120 ms, side by side with
#    `srt-live-transmit` relaying the same stream (listener in, listener
#    out; with its default `-st:yes` source-time pass-through and with
#    `-st:no`). srt-load stamps each picture with a sequence number, notes
#    when the publisher handed it to SRT and when a viewer demuxed it:
#    publisher TSBPD + relay/server + viewer TSBPD + the viewer's demuxer
#    (identical for both), so the difference between the two is what the
#    server adds over a packet relay.
#
# Usage: bench/srt_bench.sh     (results in $OUT, summary printed)
# 3. The four UDP drivers side by side (`srt-server --adapter X`, the same
#    SrtService in-process) with $DRIVER_VIEWERS viewers.
#
# Knobs: VIEWER_COUNTS="0 10 100" DRIVERS="tokio smol async-std blocking"
#        DRIVER_VIEWERS=100 WINDOW=20 WARMUP=3 MBPS=10 LATENCY=120
#        RT=1 (run server and load generator SCHED_FIFO via chrt: on a shared
#        2-core box the run queue otherwise starves both and the numbers
#        measure the neighbours) PORT=28990 SKIP_BUILD=1 OUT=<dir>
#        BIN=<dir with arcly, srt-server> LOAD_BIN=<dir with srt-load>
#        (default: the release dir; e.g. a copy of an older build to compare
#        side by side with the same load generator) SKIP_LATENCY=1
#        (skip part 2)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${CI:-}" == "true" && -z "${BENCH_FORCE:-}" ]]; then
    echo "srt_bench.sh: a benchmark, not run in CI (set BENCH_FORCE=1 to override)"
    exit 0
fi
VIEWER_COUNTS=${VIEWER_COUNTS:-"0 10 100"}
DRIVERS=${DRIVERS:-"tokio smol async-std blocking"}
DRIVER_VIEWERS=${DRIVER_VIEWERS:-100}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-3}
MBPS=${MBPS:-10}
LATENCY=${LATENCY:-120}
RT=${RT:-1}
PORT=${PORT:-28990}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-results/srt-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
BIN=${BIN:-$CARGO_TARGET_DIR/release}
LOAD_BIN=${LOAD_BIN:-$BIN}

if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p arcly-server -p arcly-bench)
fi
command -v srt-live-transmit >/dev/null || { echo "srt-live-transmit not found"; exit 1; }

RUN=()
if [[ "$RT" == 1 ]]; then RUN=(chrt -f 10); fi

SERVER_PID=
cleanup() { [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

start_arcly() {
    "${RUN[@]}" "$BIN/arcly" --rtmp off --http off --rtsp off --srt "127.0.0.1:$PORT" \
        --srt-latency "$LATENCY" >"$OUT/$1.server.out" 2>"$OUT/$1.server.err" &
    SERVER_PID=$!
    sleep 0.5
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    sleep 1
}

load() { # name, extra args...
    local name=$1
    shift
    "${RUN[@]}" "$LOAD_BIN/srt-load" --mbps "$MBPS" --latency "$LATENCY" --seconds "$WINDOW" \
        --warmup "$WARMUP" --threads 2 --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
    echo "$name: $(cat "$OUT/$name.json")"
}

echo "# SRT benchmark $(date -u +%FT%TZ) on $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

for n in $VIEWER_COUNTS; do
    start_arcly "cpu-$n"
    load "cpu-$n" --publish "127.0.0.1:$PORT" -n "$n" --server-pid "$SERVER_PID"
    stop_server
done

# Latency: one viewer, arcly vs srt-live-transmit.
LAT_MODES="yes no"
if [[ -n "${SKIP_LATENCY:-}" ]]; then LAT_MODES=; fi
if [[ -n "$LAT_MODES" ]]; then
    start_arcly "lat-arcly"
    load "lat-arcly" --publish "127.0.0.1:$PORT" -n 1 --server-pid "$SERVER_PID"
    stop_server
fi
for st in $LAT_MODES; do
    "${RUN[@]}" srt-live-transmit -a:no -st:$st \
        "srt://:$PORT?mode=listener&latency=$LATENCY" \
        "srt://:$((PORT + 1))?mode=listener&latency=$LATENCY" \
        >"$OUT/lat-slt-$st.server.out" 2>&1 &
    SERVER_PID=$!
    sleep 0.5
    load "lat-slt-$st" --publish "127.0.0.1:$PORT" --read "127.0.0.1:$((PORT + 1))" \
        --publish-streamid "" --read-streamid "" -n 1 --server-pid "$SERVER_PID"
    stop_server
done
# The UDP drivers side by side: `srt-server --adapter X` (the same
# SrtService in-process on each adapter), $DRIVER_VIEWERS viewers.
for d in $DRIVERS; do
    "${RUN[@]}" "$BIN/srt-server" --adapter "$d" --latency "$LATENCY" >"$OUT/drv-$d.server.out" 2>&1 &
    SERVER_PID=$!
    addr=
    for _ in $(seq 50); do
        addr=$(sed -n 's/^SRT listening on //p' "$OUT/drv-$d.server.out")
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    load "drv-$d" --publish "$addr" -n "$DRIVER_VIEWERS" --server-pid "$SERVER_PID"
    stop_server
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results in $OUT"
