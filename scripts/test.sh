#!/usr/bin/env bash
# Runs every test: formatting and lints, host-target unit tests, a short
# run of every fuzz target, the release Wasm build, the release
# (scripts/release.sh, checked reproducible), `envoy --mode validate` on
# every shipped config, and the end-to-end suites against real Envoy
# binaries. Installs what is missing.
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
# The dynamic module's test-only probe build (tests/envoy_e2e.rs), which
# every crate that implements its Host trait must still compile with.
cargo clippy --workspace --all-targets --features a2a-affinity-dynamic-module/fault-probe \
  --quiet -- -D warnings

say "every artifact (Wasm module, dynamic module, ext_proc server)"
scripts/build.sh

say "release: dist/ (artifacts, OCI image layouts, SHA256SUMS, SBOM), built a second time to check it is reproducible"
scripts/release.sh --check-reproducible

say "unit and property tests (host target); the dynamic module's Envoy tests load the built .so"
A2A_DYNAMIC_MODULE_SO="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/liba2a_affinity_dynamic.so" \
  cargo test --workspace --quiet -- --include-ignored

say "coverage-guided fuzzing, 30 s per target (fuzz/README.md)"
scripts/fuzz.sh --seconds 30

say "extractor check inside V8 (the module's SIMD string skip; bench/wasm-scan)"
cargo build --release --target wasm32-wasip1 --quiet -p wasm-scan
node --no-warnings bench/wasm_scan.mjs \
  "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/wasm-scan.wasm" --check

say "whole streams through the release module inside V8 (bench/wasm_stream.mjs --check)"
node --no-warnings bench/wasm_stream.mjs --check \
  "filter=${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/a2a_affinity.wasm@$(cat bench/filter-config.json)"

# The end-to-end suites run once per shell: the full set with the Wasm
# module (it also holds the tests of the module itself, the manifests and
# the agents), then every suite that sends traffic through the filter with
# the dynamic module and with the ext_proc server in the shape kgateway
# renders.
say "end-to-end tests (real Envoy), proxy-wasm module"
A2A_SHELL=wasm .venv/bin/python -m pytest -q tests
for shell in dynamic-module ext-proc; do
  say "end-to-end tests (real Envoy), $shell"
  A2A_SHELL=$shell .venv/bin/python -m pytest -q tests/e2e
done
