#!/usr/bin/env bash
# Runs every test: formatting and lints, host-target unit tests, the release
# Wasm build, `envoy --mode validate` on every shipped config, and the
# end-to-end suites against real Envoy binaries. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

say "setup"
scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The proxy-wasm glue (src/filter.rs) only compiles for the Wasm target.
cargo clippy -p a2a-affinity --target wasm32-wasip1 --quiet -- -D warnings

say "unit and property tests (host target)"
cargo test --workspace --quiet -- --include-ignored

say "release Wasm module"
scripts/build.sh

say "extractor check inside V8 (the module's SIMD string skip; bench/wasm-scan)"
cargo build --release --target wasm32-wasip1 --quiet -p wasm-scan
node --no-warnings bench/wasm_scan.mjs \
  "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/wasm-scan.wasm" --check

say "whole streams through the release module inside V8 (bench/wasm_stream.mjs --check)"
node --no-warnings bench/wasm_stream.mjs --check \
  "filter=${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/a2a_affinity.wasm@$(cat bench/filter-config.json)"

say "end-to-end tests (real Envoy)"
.venv/bin/python -m pytest -q tests
