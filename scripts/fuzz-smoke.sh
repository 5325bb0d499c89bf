#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target in fuzz/ and runs each for a
# short time on its committed seeds (fuzz/seeds/<target>/) plus a scratch
# corpus. Fails if any target crashes; the reproducer is left in
# fuzz/artifacts/<target>/ (replay it: cargo fuzz run --sanitizer none <target> <file>).
# Long campaigns: see docs/fuzzing.md.
#
# Env:
#   FUZZ_SMOKE_SECS   seconds per target (default: $ARCLY_FUZZ_SECS, else 15)
#   FUZZ_TARGETS      space-separated subset of targets (default: all)
#   CARGO_TARGET_DIR  build dir (default: cargo fuzz's fuzz/target)
#   FUZZ_SANITIZER    cargo fuzz --sanitizer (default none: the code is
#                     safe Rust, so ASan adds build time and no signal)
#
# Builds on stable Rust: RUSTC_BOOTSTRAP=1 lets it take cargo fuzz's -Z flags.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

secs="${FUZZ_SMOKE_SECS:-${ARCLY_FUZZ_SECS:-15}}"
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

all_targets="$(cargo fuzz list)"
targets="${FUZZ_TARGETS:-$all_targets}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

start=$(date +%s)
echo "fuzz-smoke: building $(echo "$targets" | wc -w) targets (sanitizer: $sanitizer)"
build() {
    if ! cargo fuzz build --sanitizer "$sanitizer" "$@" >"$scratch/build.log" 2>&1; then
        tail -60 "$scratch/build.log"
        echo "fuzz-smoke: build FAILED"
        exit 1
    fi
}
if [ -z "${FUZZ_TARGETS:-}" ]; then
    build
else
    for t in $targets; do build "$t"; done
fi
built=$(date +%s)
echo "fuzz-smoke: built in $((built - start)) s"

# Run the built binaries directly: `cargo fuzz run` would rebuild first.
triple="$(rustc -vV | sed -n 's/^host: //p')"
bindir="${CARGO_TARGET_DIR:-$root/fuzz/target}/$triple/release"

status=0
for t in $targets; do
    corpus="$scratch/$t"
    mkdir -p "$corpus" "artifacts/$t"
    seeds=()
    if [ -d "seeds/$t" ]; then
        seeds=("seeds/$t")
    fi
    log="$scratch/$t.log"
    # -max_len: the structure-aware session target needs room for op lists.
    if "$bindir/$t" -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
        runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz-smoke: $t ok (${runs:-?} runs)"
    else
        echo "fuzz-smoke: $t FAILED; log tail:"
        tail -40 "$log"
        status=1
    fi
done
echo "fuzz-smoke: done in $(($(date +%s) - start)) s"
exit $status
