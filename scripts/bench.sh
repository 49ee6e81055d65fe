#!/usr/bin/env bash
# Benchmarks the filter against the other ways of putting the A2A contextId
# into x-context-id (client header, Lua, json_to_metadata, Envoy's a2a filter)
# in one front Envoy; writes out/bench/results.{md,json,png}.
# Usage: scripts/bench.sh [--quick] [--memory SECONDS] [other bench/run.py options]
#        scripts/bench.sh --wasm-scan   (the extractor alone, inside V8)
#        scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

# --wasm-scan: time the filter's body extractor inside V8 (Node's WASI), no
# Envoy, no load generator.
if [ "${1:-}" = "--wasm-scan" ]; then
  say "building bench/wasm-scan for wasm32-wasip1"
  cargo build --release --target wasm32-wasip1 --quiet -p wasm-scan
  exec node --no-warnings bench/wasm_scan.mjs \
    "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/wasm-scan.wasm"
fi

if ! command -v wrk >/dev/null; then
  say "wrk missing: installing it (scripts/setup.sh --bench)"
  scripts/setup.sh --bench
fi

# The module the benchmark loads is the one scripts/build.sh reports, which
# lives under the default target directory.
say "building the release module (scripts/build.sh) and the empty (f) module"
env -u CARGO_TARGET_DIR scripts/build.sh
env -u CARGO_TARGET_DIR cargo build --release --target wasm32-wasip1 --quiet -p wasm-floor

say "running bench/run.py $*"
exec .venv/bin/python bench/run.py "$@"
