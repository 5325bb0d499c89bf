#!/usr/bin/env bash
# Fan-out before/after the contract work (issue 9), interleaved A B A B on
# one machine: RTMP 1 000 players of one synthetic 3 Mbit/s publish
# (arcly-load) and SRT 100 viewers on 10 streams (10 srt-load processes,
# each one 1 Mbit/s publisher + 10 viewers). The same load generators
# (LOAD_BIN) drive both servers; only the `arcly` binary differs.
# Usage: BEFORE=<dir with arcly> AFTER=<dir with arcly> LOAD_BIN=<dir with
#        arcly-load, srt-load> ROUNDS=2 bench/contract_ab.sh
# Prints one line per run: CPU-s per delivered GB of the server process.
set -euo pipefail
ROUNDS=${ROUNDS:-2}
WINDOW=${WINDOW:-15}
OUT=${OUT:-/tmp/contract-ab-$(date -u +%H%M%S)}
mkdir -p "$OUT"
RUN=(chrt -f 10)
echo "# $(date -u +%FT%TZ) $(nproc) CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load $(cut -d' ' -f1-3 /proc/loadavg)"
rtmp() { # label bin
    local port=29450
    "${RUN[@]}" "$2/arcly" --rtmp "127.0.0.1:$port" --http off --srt off $EXTRA >"$OUT/$1-rtmp.srv" 2>&1 &
    local pid=$!
    sleep 0.5
    "${RUN[@]}" "$LOAD_BIN/arcly-load" "rtmp://127.0.0.1:$port/live/bench" --publish --bitrate-kbps 3000 \
        --seconds $((WINDOW + 40)) >"$OUT/$1-pub.txt" 2>&1 &
    local pub=$!
    sleep 3
    "${RUN[@]}" "$LOAD_BIN/arcly-load" "rtmp://127.0.0.1:$port/live/bench" -n 1000 --ramp 500 --warmup 3 \
        --seconds "$WINDOW" --threads 1 --watch-pid "$pid" --label "$1" --json "$OUT/$1-rtmp.json" >"$OUT/$1-rtmp.txt" 2>&1 || true
    kill $pub $pid 2>/dev/null || true
    wait $pub $pid 2>/dev/null || true
    jq -r '"rtmp \(.label): players \(.active) delivered \(.bytes/1e9*1000|round/1000) GB, CPU-s/s \(.server_cpu_per_s*1000|round/1000), CPU-s per GB \(.cpu_s_per_gb*1000|round/1000)"' "$OUT/$1-rtmp.json"
}
srt() { # label bin
    local port=29460
    "${RUN[@]}" "$2/arcly" --rtmp off --http off --srt "127.0.0.1:$port" $EXTRA >"$OUT/$1-srt.srv" 2>&1 &
    local pid=$!
    sleep 0.5
    local pids=()
    for s in 0 1 2 3 4 5 6 7 8 9; do
        "${RUN[@]}" "$LOAD_BIN/srt-load" --publish "127.0.0.1:$port" --publish-streamid "publish:live/s$s" \
            --read-streamid "read:live/s$s" -n 10 --mbps 1 --seconds "$WINDOW" --warmup 3 --threads 1 \
            --server-pid "$pid" --json >"$OUT/$1-srt-$s.json" 2>"$OUT/$1-srt-$s.err" &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    # Every srt-load measured the same server over (nearly) the same window:
    # server CPU is the mean of their readings, bytes their sum.
    cat "$OUT"/$1-srt-*.json | jq -s -r --arg l "$1" --argjson w "$WINDOW" '
        (map(.server_cpu_s_per_s) | add / length) as $cpu
        | (map(.delivered_mbps) | add) as $mbps
        | "srt \($l): viewers \(map(.connected)|add) pictures \(map(.pictures)|add)/\(map(.pictures_expected)|add) delivered \($mbps*1000|round/1000) Mbit/s, CPU-s/s \($cpu*1000|round/1000), CPU-s per GB \(($cpu / ($mbps/8/1000))*1000|round/1000)"'
}
for r in $(seq 1 "$ROUNDS"); do
    EXTRA="" ; rtmp "before-$r" "$BEFORE"
    EXTRA="--rtsp off" ; rtmp "after-$r" "$AFTER"
    EXTRA="" ; srt "before-$r" "$BEFORE"
    EXTRA="--rtsp off" ; srt "after-$r" "$AFTER"
done
