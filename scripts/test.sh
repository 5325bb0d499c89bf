#!/usr/bin/env bash
# Runs every arcly test on a fresh Debian machine:
#   1. installs the interop tools if missing (ffmpeg, GStreamer with the
#      rtmp2, srt, x264, libav plugins, srt-tools, Chromium with
#      chromedriver) with apt-get;
#   2. cargo fmt --check;
#   3. cargo clippy -D warnings; cargo doc -p arcly with -D warnings;
#   4. builds every test target and the `arcly` binary (the binary smoke
#      tests run it);
#   5. cargo test --workspace (unit, proptest, interop with real clients);
#   6. fuzz smoke runs of every cargo-fuzz target in fuzz/
#      (scripts/fuzz-smoke.sh: stable toolchain, RUSTC_BOOTSTRAP=1).
# Stops at the first failing stage (the test stage reports every failing
# test first). CI (.ci/run) calls this same script.
#
# Environment:
#   CI=true            interop tests fail (never skip) when a tool is missing
#   CARGO_TARGET_DIR   where cargo builds (default: ./target)
#   ARCLY_TEST_ECHO=1  echo every line the external clients print
#   ARCLY_TEST_THREADS tests of one binary run at once (default 4)
#   ARCLY_FUZZ_SECS    seconds per fuzz target (default 15)
#   CARGO_INCREMENTAL  0 under CI (default there): a one-off build gains
#                      nothing from incremental state, which costs ~4 GB
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
T0=$(date +%s)
declare -a TIMES=()

section() {
    printf '\n==== %s ====  [%s, +%ss]\n' "$*" "$(date -u +%H:%M:%S)" "$(( $(date +%s) - T0 ))"
}

summary() {
    local rc=$?
    printf '\n==== summary (exit %s) ====\n' "$rc"
    if ((${#TIMES[@]})); then printf '%s\n' "${TIMES[@]}"; fi
    echo "total: $(( $(date +%s) - T0 ))s"
}
trap summary EXIT

timed() {
    # timed LABEL CMD...: runs CMD, records its duration under LABEL.
    local label=$1; shift
    local s; s=$(date +%s)
    "$@"
    TIMES+=("$(printf '%-34s %5ss' "$label" "$(( $(date +%s) - s ))")")
}

# ---------------------------------------------------------------------------
section "1/6 system packages (ffmpeg, GStreamer, srt-tools, Chromium)"
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v gst-launch-1.0 >/dev/null 2>&1 || need+=(gstreamer1.0-tools)
gst_has() { command -v gst-inspect-1.0 >/dev/null 2>&1 && gst-inspect-1.0 --exists "$1" >/dev/null 2>&1; }
gst_has videotestsrc || need+=(gstreamer1.0-plugins-base)
gst_has flvmux       || need+=(gstreamer1.0-plugins-good)
gst_has rtmp2sink    || need+=(gstreamer1.0-plugins-bad)
gst_has x264enc      || need+=(gstreamer1.0-plugins-ugly)
gst_has rtspclientsink || need+=(gstreamer1.0-rtsp)
gst_has avdec_h264   || need+=(gstreamer1.0-libav)
gst_has srtsrc       || need+=(gstreamer1.0-plugins-bad)
command -v srt-live-transmit >/dev/null 2>&1 || need+=(srt-tools)
# tests/tests/rtsp_pull.rs: a camera stand-in on GStreamer's RTSP server (python3-gi).
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 \
    || need+=(python3-gi gir1.2-gst-rtsp-server-1.0)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v stdbuf >/dev/null 2>&1 || need+=(coreutils)
# arcly-socket's full-send-buffer test: a rate-limited loopback in its own
# network namespace (unshare -rn, ip, tc).
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# arcly-webrtc's `transcode` feature (AAC -> Opus): libopus through
# pkg-config (the `opus` crate's audiopus_sys finds it; without it it would
# try a cmake build of its bundled copy).
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
# tests/tests/webrtc_aiortc.rs: aiortc, an independent WebRTC stack.
/usr/bin/python3 -c 'import aiortc' >/dev/null 2>&1 || need+=(python3-aiortc)
if ((${#need[@]})); then
    # Deduplicate; one install for everything missing.
    mapfile -t need < <(printf '%s\n' "${need[@]}" gstreamer1.0-plugins-base | sort -u)
    echo "installing: ${need[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
else
    echo "all present: $(ffmpeg -version | head -1 | cut -d' ' -f1-3); $(gst-launch-1.0 --version | head -1)"
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "adding rustfmt and clippy"
    rustup component add rustfmt clippy
fi

# A full build takes ~6 GB under the target directory; say so up front when
# the disk is short instead of failing in the linker.
# (the target directory may not exist yet: look at its nearest parent).
disk_dir=${CARGO_TARGET_DIR:-$ROOT}
while [ ! -d "$disk_dir" ]; do disk_dir=$(dirname "$disk_dir"); done
avail_kb=$(df -Pk "$disk_dir" 2>/dev/null | awk 'NR==2 {print $4}' || true)
echo "disk: $(( ${avail_kb:-0} / 1048576 )) GiB free under $disk_dir"
if [ -n "${avail_kb:-}" ] && [ "$avail_kb" -lt 8000000 ]; then
    echo "warning: less than 8 GB free; the build may run out of disk"
fi

# ---------------------------------------------------------------------------
section "2/6 cargo fmt --all -- --check"
timed "fmt" cargo fmt --all -- --check

# ---------------------------------------------------------------------------
section "3/6 cargo clippy --workspace --all-targets -- -D warnings"
timed "clippy" cargo clippy --workspace --all-targets -- -D warnings
# Doc links of the core crate (stale links are warnings, made errors here).
timed "doc" env RUSTDOCFLAGS="-D warnings" cargo doc -p arcly --no-deps --all-features

# ---------------------------------------------------------------------------
section "4/6 build every test target and the arcly binary"
# Compiling first keeps the test stage's time honest and builds the `arcly`
# binary that tests/tests/server_binary.rs runs (CARGO_BIN_EXE_* does not
# cross crates).
timed "build tests" cargo test --workspace --no-run
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export ARCLY_BIN="$TARGET_DIR/debug/arcly"
if [ ! -x "$ARCLY_BIN" ]; then
    timed "build arcly" cargo build -p arcly-server --bin arcly
fi
echo "ARCLY_BIN=$ARCLY_BIN"

# ---------------------------------------------------------------------------
section "5/6 cargo test --workspace"
# Interop tests spend most of their time waiting on real-time streams, so
# they run 4 at a time even on 2 cores. --no-fail-fast: report every
# failing test binary in one run.
# Each interop test has its own watchdog; the outer timeout only turns a
# wedged run into a clear failure long before CI's own limit.
timed "cargo test" timeout --kill-after=30s 45m \
    cargo test --workspace --no-fail-fast -- --test-threads="${ARCLY_TEST_THREADS:-4}"

# ---------------------------------------------------------------------------
section "loom models of the engine's ring and notifier (release, --cfg loom)"
# A separate target directory: switching RUSTFLAGS would otherwise rebuild
# the whole workspace for the next cargo command.
timed "loom" env RUSTFLAGS="--cfg loom" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/loom" \
    cargo test -p arcly --release --test loom_engine

# ---------------------------------------------------------------------------
if [ -f fuzz/Cargo.toml ]; then
    section "6/6 fuzz smoke runs (${ARCLY_FUZZ_SECS:-15} s per target; scripts/fuzz-smoke.sh)"
    # Stable toolchain with RUSTC_BOOTSTRAP=1, no sanitizer; installs
    # cargo-fuzz from crates.io if missing (see docs/fuzzing.md).
    timed "fuzz smoke" ./scripts/fuzz-smoke.sh
fi

echo
echo "all stages passed"
