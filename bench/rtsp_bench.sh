#!/usr/bin/env bash
# RTSP/TCP fan-out vs RTMP fan-out from one arcly, side by side in one run,
# and time to first frame of an RTSP viewer after PLAY. Not a test, not run
# in CI.
#
# For each protocol a fresh `arcly --rtmp .. --rtsp ..` is started, a
# synthetic 3 Mbit/s H.264 + 128 kbit/s AAC stream is published over RTMP
# by `arcly-load --publish` (paced in real time, 2 s GOP), and after
# $PREROLL s, $PLAYERS players connect (`arcly-load`, RTMP players with
# arcly's RTMP client machine, RTSP players with its RTSP client machine over
# TCP interleaved) and a $WINDOW s window is measured: server CPU from
# /proc/PID/stat, bytes the players read, frames, lag, RSS.
# Then, on the RTSP server, $TTFF_PLAYERS RTSP players join one by one
# (ramp $TTFF_RAMP/s): the time from writing PLAY to the first decoded video
# frame (the GOP cache's keyframe) is reported per player.
#
# Usage: bench/rtsp_bench.sh   Knobs: PLAYERS=1000 WINDOW=20 PREROLL=10
#   WARMUP=3 RAMP=200 TTFF_PLAYERS=50 TTFF_RAMP=10 RT=0 (1: chrt -f 10)
#   SKIP_BUILD=1 OUT=<dir> RTMP_PORT=29370 RTSP_PORT=29371
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${CI:-}" == "true" && -z "${BENCH_FORCE:-}" ]]; then
    echo "rtsp_bench.sh: a benchmark, not run in CI"; exit 0
fi
PLAYERS=${PLAYERS:-1000}; WINDOW=${WINDOW:-20}; PREROLL=${PREROLL:-10}
WARMUP=${WARMUP:-3}; RAMP=${RAMP:-200}; RT=${RT:-0}
TTFF_PLAYERS=${TTFF_PLAYERS:-50}; TTFF_RAMP=${TTFF_RAMP:-10}
RTMP_PORT=${RTMP_PORT:-29370}; RTSP_PORT=${RTSP_PORT:-29371}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-results/rtsp-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p arcly-server -p arcly-bench)
fi
BIN=$CARGO_TARGET_DIR/release
prio=()
[[ "$RT" == 1 ]] && prio=(chrt -f 10)
ulimit -n "$(ulimit -Hn)" || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_server() { # label
    "${prio[@]}" "$BIN/arcly" --rtmp "127.0.0.1:$RTMP_PORT" --rtsp "127.0.0.1:$RTSP_PORT" \
        --rtsp-udp off --srt off --http off --webrtc off >"$OUT/server-$1.log" 2>&1 &
    server=$!; pids+=("$server")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$RTSP_PORT") 2>/dev/null && break; sleep 0.1
    done
    "${prio[@]}" "$BIN/arcly-load" --publish --seconds 0 --bitrate-kbps 3000 \
        "rtmp://127.0.0.1:$RTMP_PORT/live/bench" >"$OUT/publisher-$1.log" 2>&1 &
    publisher=$!; pids+=("$publisher")
    sleep "$PREROLL"
}
stop_server() {
    kill "$publisher" "$server" 2>/dev/null || true
    wait "$publisher" "$server" 2>/dev/null || true
}

for proto in rtmp rtsp; do
    start_server "$proto"
    port=$RTMP_PORT; [[ $proto == rtsp ]] && port=$RTSP_PORT
    echo "== $proto: $PLAYERS players"
    "${prio[@]}" "$BIN/arcly-load" "$proto://127.0.0.1:$port/live/bench" -n "$PLAYERS" \
        --ramp "$RAMP" --warmup "$WARMUP" --seconds "$WINDOW" --watch-pid "$server" \
        --label "arcly-$proto" --json "$OUT/$proto-$PLAYERS.json" | tee "$OUT/$proto-$PLAYERS.txt"
    if [[ $proto == rtsp ]]; then
        echo "== rtsp: time to first frame after PLAY, $TTFF_PLAYERS players at $TTFF_RAMP/s"
        "${prio[@]}" "$BIN/arcly-load" "rtsp://127.0.0.1:$port/live/bench" -n "$TTFF_PLAYERS" \
            --ramp "$TTFF_RAMP" --warmup 0 --seconds 2 --label ttff \
            --json "$OUT/rtsp-ttff.json" | tee "$OUT/rtsp-ttff.txt"
    fi
    stop_server
done
echo "results in $OUT"
