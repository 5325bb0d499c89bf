#!/usr/bin/env bash
# Server benchmark: one ffmpeg-rate publisher (~3 Mbit/s H.264 + AAC) and up
# to 1 000 RTMP players on loopback, arcly side by side with nginx-rtmp.
#
# Not a test and not run in CI. For every server and every scenario it starts
# a fresh server process, an ffmpeg publisher and `arcly-load`, which measures
# the server process (CPU from /proc/PID/stat, VmRSS from /proc/PID/status)
# over the same window in which it counts the delivered bytes.
#
# Scenarios: players in $PLAYER_COUNTS (default "0 10 100 1000") playing the
# stream, then $IDLE_PLAYERS idle players (handshake + connect, no stream) for
# resident memory per idle connection.
#
# Usage: bench/server_bench.sh            (results in $OUT, summary printed)
# Knobs (environment):
#   SERVERS="arcly nginx"   which servers to run
#   PLAYER_COUNTS="0 10 100 1000"  IDLE_PLAYERS=1000
#   WINDOW=30 (s measured)  WARMUP=3 (s after the ramp)  RAMP=200 (conn/s)
#   PREROLL=35              s of publishing before players connect: the
#                           memory baseline is taken then, so the server's
#                           per-stream buffers must be full (arcly's ring is
#                           2048 frames, ~30 s of this stream)
#   PUBLISHER=copy|encode   copy (default): encode the lavfi clip once with the
#                           settings below, then publish it with `ffmpeg -re
#                           -c copy` (same stream, same rate, and the 2-core
#                           box does not spend a core on x264 during the
#                           measurement); encode: live x264 as in the issue.
#   LOAD_THREADS=1          tokio workers of the load generator
#   PIN=0                   1: pin the server to CPU 1, publisher and load
#                           generator to CPU 0
#   ARCLY_PORT=29350 NGINX_PORT=29360   loopback ports (must be free)
#   ARCLY_ARGS=""           extra flags for the arcly binary (e.g. a write
#                           merge window once the server has one)
#   SKIP_BUILD=1            use the release binaries already built
#   OUT=<dir>               results (default $CARGO_TARGET_DIR/bench-results/<time>)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${CI:-}" == "true" && -z "${BENCH_FORCE:-}" ]]; then
    echo "server_bench.sh: a benchmark, not run in CI (set BENCH_FORCE=1 to override)"
    exit 0
fi

SERVERS=${SERVERS:-"arcly nginx"}
PLAYER_COUNTS=${PLAYER_COUNTS:-"0 10 100 1000"}
IDLE_PLAYERS=${IDLE_PLAYERS:-1000}
WINDOW=${WINDOW:-30}
WARMUP=${WARMUP:-3}
RAMP=${RAMP:-200}
PREROLL=${PREROLL:-35}
PUBLISHER=${PUBLISHER:-copy}
LOAD_THREADS=${LOAD_THREADS:-1}
PIN=${PIN:-0}
ARCLY_ARGS=${ARCLY_ARGS:-}
ARCLY_PORT=${ARCLY_PORT:-29350}
NGINX_PORT=${NGINX_PORT:-29360}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
STREAM=live/bench
mkdir -p "$OUT"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- set-up
if ! ulimit -n 65536 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
fi
log "open files limit: $(ulimit -n)"

need_pkgs=()
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v ss >/dev/null || need_pkgs+=(iproute2)
if [[ " $SERVERS " == *" nginx "* ]]; then
    command -v nginx >/dev/null || need_pkgs+=(nginx)
    [[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]] || need_pkgs+=(libnginx-mod-rtmp)
fi
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release (arcly-server, arcly-bench) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -j2 -p arcly-server -p arcly-bench)
fi
BIN=$CARGO_TARGET_DIR/release

pin() { # pin CPU-LIST CMD...: exec CMD, pinned when PIN=1. Use as `pin ... &`
    # or in `( ... )` only: it replaces the calling (sub)shell, so `$!` is CMD.
    local cpus=$1
    shift
    if [[ $PIN == 1 ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

# Processes this script started, stopped on exit (by pid only).
declare -a STARTED=()
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT

port_listening() { ss -Hltn "sport = :$1" | grep -q LISTEN; }

wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 100); do
        port_listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The publisher's clip (PUBLISHER=copy): the issue's ffmpeg settings, once.
CLIP=$CARGO_TARGET_DIR/bench-clip-720p25-3M.flv
ENC_ARGS=(-f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100
    -c:v libx264 -preset ultrafast -b:v 3M -maxrate 3M -bufsize 3M -g 50 -c:a aac -b:a 128k)
if [[ $PUBLISHER == copy && ! -s $CLIP ]]; then
    log "encoding the 90 s publisher clip once: $CLIP"
    ffmpeg -hide_banner -loglevel error -y "${ENC_ARGS[@]}" -t 90 -f flv "$CLIP.tmp"
    mv "$CLIP.tmp" "$CLIP"
fi

start_publisher() { # URL LOGFILE -> pid in PUB_PID
    local url=$1 logf=$2
    if [[ $PUBLISHER == copy ]]; then
        pin 0 ffmpeg -hide_banner -loglevel warning -nostdin -re -stream_loop -1 -i "$CLIP" \
            -c copy -f flv "$url" >"$logf" 2>&1 &
    else
        pin 0 ffmpeg -hide_banner -loglevel warning -nostdin -re "${ENC_ARGS[@]}" \
            -f flv "$url" >"$logf" 2>&1 &
    fi
    PUB_PID=$!
    STARTED+=("$PUB_PID")
}

start_server() { # NAME -> pid in SRV_PID, port in SRV_PORT
    local name=$1
    case $name in
    arcly)
        SRV_PORT=$ARCLY_PORT
        if port_listening "$SRV_PORT"; then
            log "port $SRV_PORT is already in use; set ARCLY_PORT"
            return 1
        fi
        # shellcheck disable=SC2086 # ARCLY_ARGS is a list of flags
        RUST_LOG=${RUST_LOG:-warn} pin 1 "$BIN/arcly" --rtmp "127.0.0.1:$SRV_PORT" $ARCLY_ARGS \
            >>"$OUT/arcly.log" 2>&1 &
        SRV_PID=$!
        ;;
    nginx)
        SRV_PORT=$NGINX_PORT
        if port_listening "$SRV_PORT"; then
            log "port $SRV_PORT is already in use; set NGINX_PORT"
            return 1
        fi
        local dir=$OUT/nginx
        mkdir -p "$dir"
        sed -e "s/@PORT@/$SRV_PORT/" -e "s#@DIR@#$dir#" "$ROOT/bench/nginx-rtmp.conf" >"$dir/nginx.conf"
        pin 1 nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-start.log" >>"$dir/stdout.log" 2>&1 &
        SRV_PID=$!
        ;;
    *)
        log "unknown server $name"
        return 1
        ;;
    esac
    STARTED+=("$SRV_PID")
    if ! wait_port "$SRV_PORT" "$SRV_PID"; then
        log "$name did not start listening on $SRV_PORT"
        return 1
    fi
}

# --------------------------------------------------------------- machine
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?')"
    echo "ffmpeg: $(ffmpeg -version | head -1 | cut -d' ' -f3)"
    echo "arcly extra flags: ${ARCLY_ARGS:-none}"
    echo "publisher: $PUBLISHER; pre-roll ${PREROLL}s, window ${WINDOW}s, warmup ${WARMUP}s, ramp ${RAMP}/s, load generator threads $LOAD_THREADS, pinning $PIN"
} | tee "$OUT/machine.txt" >&2

# ------------------------------------------------------------- scenarios
run_scenario() { # SERVER MODE PLAYERS
    local server=$1 mode=$2 n=$3
    local tag=$server-$mode-$n
    log "== $tag"
    start_server "$server" || return 1
    local url=rtmp://127.0.0.1:$SRV_PORT/$STREAM
    start_publisher "$url" "$OUT/$tag-ffmpeg.log"
    sleep 4
    local probe_at=$SECONDS
    # One short probe player: is the stream flowing?
    if ! "$BIN/arcly-load" "$url" -n 1 --seconds 2 --warmup 0 --json "$OUT/$tag-probe.json" \
        >"$OUT/$tag-probe.txt" 2>&1 || [[ $(jq '.frames_median' "$OUT/$tag-probe.json") == 0 ]]; then
        log "$tag: no frames reach a probe player; see $OUT/$tag-probe.txt and $OUT/$tag-ffmpeg.log"
        stop_pid "$PUB_PID"
        stop_pid "$SRV_PID"
        return 1
    fi
    sleep $((PREROLL - (SECONDS - probe_at) - 4 > 1 ? PREROLL - (SECONDS - probe_at) - 4 : 1))
    local rc=0
    (pin 0 timeout $((WINDOW + WARMUP + 90)) "$BIN/arcly-load" "$url" -n "$n" --mode "$mode" \
        --ramp "$RAMP" --warmup "$WARMUP" --seconds "$WINDOW" --threads "$LOAD_THREADS" \
        --watch-pid "$SRV_PID" --label "$server" --json "$OUT/$tag.json" \
        >"$OUT/$tag.txt" 2>"$OUT/$tag.err") || rc=$?
    cat "$OUT/$tag.txt" >&2
    kill -0 "$PUB_PID" 2>/dev/null || log "$tag: the publisher ended early (see $OUT/$tag-ffmpeg.log)"
    stop_pid "$PUB_PID"
    stop_pid "$SRV_PID"
    return $rc
}

for server in $SERVERS; do
    for n in $PLAYER_COUNTS; do
        run_scenario "$server" play "$n" || log "$server play $n failed"
    done
    if ((IDLE_PLAYERS > 0)); then
        run_scenario "$server" idle "$IDLE_PLAYERS" || log "$server idle $IDLE_PLAYERS failed"
    fi
done

# ---------------------------------------------------------------- report
{
    cat "$OUT/machine.txt"
    echo
    echo "| server | mode | players | active | frames/player in window min / median / max | delivered (GB) | server CPU-s/s | CPU-s per GB | RSS before → during (MiB) | KiB per player | lag p99 / growth max (ms) | first frame p50 (ms) | load-gen CPU-s |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---|---:|---|---:|---:|"
    for f in "$OUT"/*-play-*.json "$OUT"/*-idle-*.json; do
        [[ -f $f && $f != *probe* ]] || continue
        jq -r '
          def r(n): if . == null then "n/a" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
          "| \(.label) | \(.mode) | \(.players) | \(.active) | \(.frames_min) / \(.frames_median) / \(.frames_max) | \(.bytes / 1e9 | r(3)) | \(.server_cpu_per_s | r(3)) | \(.cpu_s_per_gb | r(3)) | \(.rss_base_kib / 1024 | r(1)) → \(.rss_median_kib / 1024 | r(1)) | \(.rss_per_player_kib | r(1)) | \(.lag_ms_p99) / \(.lag_growth_ms_max) | \(.ttff_ms_p50) | \(.load_cpu_s | r(2)) |"' "$f"
    done
    echo
    # Ratios at the largest player count, arcly / nginx-rtmp.
    big=$(echo "$PLAYER_COUNTS" | tr ' ' '\n' | sort -n | tail -1)
    a=$OUT/arcly-play-$big.json
    b=$OUT/nginx-play-$big.json
    if [[ -f $a && -f $b ]]; then
        jq -rn --slurpfile a "$a" --slurpfile b "$b" '
          def ratio(x; y): if x == null or y == null or y == 0 then "n/a" else (x / y * 100 | round / 100 | tostring) end;
          "ratios arcly / nginx-rtmp at \($a[0].players) players: CPU-s per GB \(ratio($a[0].cpu_s_per_gb; $b[0].cpu_s_per_gb)), server CPU-s/s \(ratio($a[0].server_cpu_per_s; $b[0].server_cpu_per_s)), KiB per player \(ratio($a[0].rss_per_player_kib; $b[0].rss_per_player_kib))"'
    fi
    a=$OUT/arcly-idle-$IDLE_PLAYERS.json
    b=$OUT/nginx-idle-$IDLE_PLAYERS.json
    if [[ -f $a && -f $b ]]; then
        jq -rn --slurpfile a "$a" --slurpfile b "$b" '
          def ratio(x; y): if x == null or y == null or y == 0 then "n/a" else (x / y * 100 | round / 100 | tostring) end;
          "ratio arcly / nginx-rtmp, KiB per idle player: \(ratio($a[0].rss_per_player_kib; $b[0].rss_per_player_kib))"'
    fi
} | tee "$OUT/summary.md"
log "results in $OUT"
