#!/usr/bin/env bash
# Builds the release filter module and prints its path and size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 --quiet -p a2a-affinity
wasm=${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/a2a_affinity.wasm
printf '%s (%s bytes)\n' "$wasm" "$(stat -c %s "$wasm")"
