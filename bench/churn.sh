#!/usr/bin/env bash
# Churn against the release binary (docs/security.md, Churn): 40 000
# connect -> publish -> play -> HLS request -> close cycles over loopback,
# 4 at a time, then checks that the server's open file descriptors and RSS
# (from /proc/PID) are back to their baseline. The test suite runs the same
# test with 2 000 cycles against the debug binary.
#
#   bench/churn.sh [CYCLES]        (default 40000)
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-40000}"
cargo build --release -p arcly-server --bin arcly
ARCLY_BIN="$PWD/target/release/arcly" CHURN_CYCLES="$cycles" \
    cargo test -p arcly-tests --test churn -- --nocapture
