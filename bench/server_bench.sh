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
#   SERVERS="arcly arcly-merge200 nginx"   which servers to run; arcly-mergeMS
#                           is arcly with `--write-merge MS` (each player's
#                           writes merged over MS milliseconds, SRS-like)
#   MERGE_PLAYER_COUNTS="100 1000"   player counts for the arcly-merge* runs
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
#   NICE=                   e.g. -10: run server, publisher and load generator
#                           at that nice level (root), so that on a shared,
#                           busy machine they are not starved by other jobs
#                           (CPU-s are counted per process either way, but
#                           starvation shows up as lag and connect timeouts)
#   RT=0                    1: run them SCHED_FIFO (chrt -f 10, root). On a
#                           shared 2-core box with a load average of 15 even
#                           nice -10 left both servers and the load generator
#                           waiting ~8x their run time on the run queue (1000
#                           players fell seconds behind and timed out); with
#                           RT=1 every player gets every frame. They use well
#                           under a core, and the kernel's RT throttling (95%)
#                           still applies.
#   IDLE_WINDOW=10          window of the idle scenario (arcly closes a
#                           connection without a stream after 30 s idle)
#   ARCLY_PORT=29350 NGINX_PORT=29360   loopback ports (must be free)
#   ARCLY_ARGS=""           extra flags for every arcly run
#   SKIP_BUILD=1            use the release binaries already built
#   REPORT_ONLY=1           only rebuild $OUT/summary.md from $OUT/*.json
#   OUT=<dir>               results (default $CARGO_TARGET_DIR/bench-results/<time>)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${CI:-}" == "true" && -z "${BENCH_FORCE:-}" ]]; then
    echo "server_bench.sh: a benchmark, not run in CI (set BENCH_FORCE=1 to override)"
    exit 0
fi

SERVERS=${SERVERS:-"arcly arcly-merge200 nginx"}
MERGE_PLAYER_COUNTS=${MERGE_PLAYER_COUNTS:-"100 1000"}
PLAYER_COUNTS=${PLAYER_COUNTS:-"0 10 100 1000"}
IDLE_PLAYERS=${IDLE_PLAYERS:-1000}
WINDOW=${WINDOW:-30}
WARMUP=${WARMUP:-3}
RAMP=${RAMP:-200}
PREROLL=${PREROLL:-35}
PUBLISHER=${PUBLISHER:-copy}
LOAD_THREADS=${LOAD_THREADS:-1}
PIN=${PIN:-0}
NICE=${NICE:-}
RT=${RT:-0}
IDLE_WINDOW=${IDLE_WINDOW:-10}
ARCLY_ARGS=${ARCLY_ARGS:-}
ARCLY_PORT=${ARCLY_PORT:-29350}
NGINX_PORT=${NGINX_PORT:-29360}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
STREAM=live/bench
mkdir -p "$OUT"

counts_for() { # SERVER -> its player counts
    if [[ $1 == arcly-merge* ]]; then echo "$MERGE_PLAYER_COUNTS"; else echo "$PLAYER_COUNTS"; fi
}

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

if [[ -z ${SKIP_BUILD:-} && -z ${REPORT_ONLY:-} ]]; then
    log "building release (arcly-server, arcly-bench) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -j2 -p arcly-server -p arcly-bench)
fi
BIN=$CARGO_TARGET_DIR/release

pin() { # pin CPU-LIST CMD...: exec CMD, pinned when PIN=1, reniced when NICE
    # is set. Use as `pin ... &` or in `( ... )` only: it replaces the calling
    # (sub)shell, so `$!` is CMD itself.
    local cpus=$1
    shift
    local pre=()
    if [[ $RT == 1 ]]; then
        pre+=(chrt -f 10)
    elif [[ -n $NICE ]]; then
        pre+=(nice -n "$NICE")
    fi
    [[ $PIN == 1 ]] && pre+=(taskset -c "$cpus")
    exec "${pre[@]}" "$@"
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
if [[ $PUBLISHER == copy && ! -s $CLIP && -z ${REPORT_ONLY:-} ]]; then
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
    arcly | arcly-merge*)
        local merge=()
        [[ $name == arcly-merge* ]] && merge=(--write-merge "${name#arcly-merge}")
        SRV_PORT=$ARCLY_PORT
        if port_listening "$SRV_PORT"; then
            log "port $SRV_PORT is already in use; set ARCLY_PORT"
            return 1
        fi
        # shellcheck disable=SC2086 # ARCLY_ARGS is a list of flags
        RUST_LOG=${RUST_LOG:-warn} pin 1 "$BIN/arcly" --rtmp "127.0.0.1:$SRV_PORT" "${merge[@]}" $ARCLY_ARGS \
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

if [[ -z ${REPORT_ONLY:-} ]]; then
# --------------------------------------------------------------- machine
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?')"
    echo "ffmpeg: $(ffmpeg -version | head -1 | cut -d' ' -f3)"
    echo "arcly extra flags: ${ARCLY_ARGS:-none}"
    echo "publisher: $PUBLISHER; pre-roll ${PREROLL}s, window ${WINDOW}s (idle ${IDLE_WINDOW}s), warmup ${WARMUP}s, ramp ${RAMP}/s, load generator threads $LOAD_THREADS, pinning $PIN, nice ${NICE:-0}, SCHED_FIFO $RT"
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
    local rc=0 window=$WINDOW warmup=$WARMUP
    if [[ $mode == idle ]]; then
        window=$IDLE_WINDOW
        warmup=1
    fi
    (pin 0 timeout $((window + warmup + 90)) "$BIN/arcly-load" "$url" -n "$n" --mode "$mode" \
        --ramp "$RAMP" --warmup "$warmup" --seconds "$window" --threads "$LOAD_THREADS" \
        --watch-pid "$SRV_PID" --label "$server" --json "$OUT/$tag.json" \
        >"$OUT/$tag.txt" 2>"$OUT/$tag.err") || rc=$?
    cat "$OUT/$tag.txt" >&2
    kill -0 "$PUB_PID" 2>/dev/null || log "$tag: the publisher ended early (see $OUT/$tag-ffmpeg.log)"
    stop_pid "$PUB_PID"
    stop_pid "$SRV_PID"
    return $rc
}

for server in $SERVERS; do
    for n in $(counts_for "$server"); do
        run_scenario "$server" play "$n" || log "$server play $n failed"
    done
    # Idle connections carry no media: merging writes changes nothing there.
    if ((IDLE_PLAYERS > 0)) && [[ $server != arcly-merge* ]]; then
        run_scenario "$server" idle "$IDLE_PLAYERS" || log "$server idle $IDLE_PLAYERS failed"
    fi
done

fi # REPORT_ONLY

# ---------------------------------------------------------------- report
{
    cat "$OUT/machine.txt"
    echo
    echo "| server | mode | players | active | frames/player in window min / median / max | delivered (GB) | server CPU-s/s | CPU-s per GB | RSS before → during (MiB) | KiB per player | lag p99 / growth max (ms) | first frame p50 (ms) | load-gen CPU-s |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---|---:|---|---:|---:|"
    for f in $(for server in $SERVERS; do
        for n in $(counts_for "$server"); do echo "$OUT/$server-play-$n.json"; done
    done) $(for server in $SERVERS; do echo "$OUT/$server-idle-$IDLE_PLAYERS.json"; done); do
        [[ -f $f ]] || continue
        jq -r '
          def r(n): if . == null then "n/a" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
          "| \(.label) | \(.mode) | \(.players) | \(.active) | \(.frames_min) / \(.frames_median) / \(.frames_max) | \(.bytes / 1e9 | r(3)) | \(.server_cpu_per_s | r(3)) | \(.cpu_s_per_gb | r(3)) | \(.rss_base_kib / 1024 | r(1)) → \(.rss_median_kib / 1024 | r(1)) | \(.rss_per_player_kib | r(1)) | \(.lag_ms_p99) / \(.lag_growth_ms_max) | \(.ttff_ms_p50) | \(.load_cpu_s | r(2)) |"' "$f"
    done
    echo
    # Ratios at the largest player count, arcly (each variant) / nginx-rtmp.
    big=$(echo "$PLAYER_COUNTS" | tr ' ' '\n' | sort -n | tail -1)
    b=$OUT/nginx-play-$big.json
    for server in $SERVERS; do
        a=$OUT/$server-play-$big.json
        [[ $server != nginx && -f $a && -f $b ]] || continue
        jq -rn --slurpfile a "$a" --slurpfile b "$b" '
          def ratio(x; y): if x == null or y == null or y == 0 then "n/a" else (x / y * 100 | round / 100 | tostring) end;
          "ratios \($a[0].label) / nginx-rtmp at \($a[0].players) players: CPU-s per GB \(ratio($a[0].cpu_s_per_gb; $b[0].cpu_s_per_gb)), server CPU-s/s \(ratio($a[0].server_cpu_per_s; $b[0].server_cpu_per_s)), load-generator CPU-s \(ratio($a[0].load_cpu_s; $b[0].load_cpu_s))"'
    done
    # Marginal memory and CPU per playing player between the two largest
    # counts: the per-stream egress cache that appears with the first player,
    # and the publish cost, cancel out.
    for server in $SERVERS; do
        read -r n1 n2 <<<"$(counts_for "$server" | tr ' ' '\n' | sort -n | tail -2 | tr '\n' ' ')"
        a=$OUT/$server-play-$n1.json
        b=$OUT/$server-play-$n2.json
        if [[ -n ${n1:-} && -n ${n2:-} && -f $a && -f $b ]]; then
            jq -rn --slurpfile a "$a" --slurpfile b "$b" '
              if ($b[0].active - $a[0].active) > 0 and $a[0].rss_median_kib != null and $b[0].rss_median_kib != null
              then "\($b[0].label): per playing player, \($a[0].active) → \($b[0].active) players: \((($b[0].rss_median_kib - $a[0].rss_median_kib) / ($b[0].active - $a[0].active)) * 10 | round / 10) KiB resident, \((($b[0].server_cpu_per_s - $a[0].server_cpu_per_s) / ($b[0].active - $a[0].active)) * 1e6 | round) µs CPU per second"
              else empty end'
        fi
    done
    a=$OUT/arcly-idle-$IDLE_PLAYERS.json
    b=$OUT/nginx-idle-$IDLE_PLAYERS.json
    if [[ -f $a ]]; then
        jq -r '"arcly: KiB per idle player (handshake + connect, no stream): \(.rss_per_player_kib)"' "$a"
    fi
    if [[ -f $a && -f $b ]]; then
        jq -rn --slurpfile a "$a" --slurpfile b "$b" '
          def ratio(x; y): if x == null or y == null or y == 0 then "n/a" else (x / y * 100 | round / 100 | tostring) end;
          "ratio arcly / nginx-rtmp, KiB per idle player: \(ratio($a[0].rss_per_player_kib; $b[0].rss_per_player_kib))"'
    fi
} | tee "$OUT/summary.md"
log "results in $OUT"
