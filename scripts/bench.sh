#!/usr/bin/env bash
# Benchmarks the filter against the other ways of putting the A2A contextId
# into x-context-id (client header, Lua, json_to_metadata, Envoy's a2a filter)
# in one front Envoy, and the same filter as a dynamic module and behind
# ext_proc; writes out/bench/results.{md,json,png}.
# Usage: scripts/bench.sh [--quick] [--memory SECONDS] [other bench/run.py options]
#        scripts/bench.sh --wasm-scan   (the extractor alone, inside V8)
#        scripts/bench.sh --wasm-stream [MODULE.wasm]
#                                       (whole streams through the release
#                                       module inside V8, against the empty
#                                       module; MODULE: another build beside it)
#        scripts/bench.sh --instructions [bench/instructions.py options]
#                                       (instructions per request in the
#                                       front Envoy, counted by callgrind)
#        scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

# The artifacts every Envoy and V8 run loads, under the default target
# directory: what scripts/build.sh builds and reports (the release filter,
# and for the Envoy runs the dynamic module of (g) and the ext_proc server
# of (h): pass --wasm-only for the V8 runs, which need the filter alone),
# and the empty (f) module beside them.
build_modules() {
  say "building the release artifacts (scripts/build.sh${1:+ $1}) and the empty (f) module"
  env -u CARGO_TARGET_DIR scripts/build.sh "$@"
  env -u CARGO_TARGET_DIR cargo build --release --target wasm32-wasip1 --quiet -p wasm-floor
  # The empty dynamic module of (g0), (g0'), (g0'') and (g0s), run when asked
  # for (--variants ...,dynamic_floor,dynamic_floor_hold,dynamic_floor_touch,
  # dynamic_floor_skip).
  [ "${1:-}" = "--wasm-only" ] ||
    env -u CARGO_TARGET_DIR cargo build --profile release-native --quiet -p dynamic-floor
}

# --wasm-scan: time the filter's body extractor inside V8 (Node's WASI), no
# Envoy, no load generator.
if [ "${1:-}" = "--wasm-scan" ]; then
  say "building bench/wasm-scan for wasm32-wasip1"
  cargo build --release --target wasm32-wasip1 --quiet -p wasm-scan
  exec node --no-warnings bench/wasm_scan.mjs \
    "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/wasm-scan.wasm"
fi

# --wasm-stream: whole streams (headers, body, response) through the release
# module inside V8 (Node) with an in-process proxy-wasm host, next to the
# empty module (f) bare and with the least work of a body-reading filter; no
# Envoy. An optional second module (an earlier build) runs in the same
# process, so the two are compared under the same conditions.
if [ "${1:-}" = "--wasm-stream" ]; then
  build_modules --wasm-only
  release=target/wasm32-wasip1/release
  config=$(cat bench/filter-config.json)
  modules=("floor=$release/wasm_floor.wasm" "floor-pause-copy=$release/wasm_floor.wasm@pause,copy"
    "filter=$release/a2a_affinity.wasm@$config")
  if [ -n "${2:-}" ]; then
    modules+=("other=$2@$config")
  fi
  exec node --no-warnings bench/wasm_stream.mjs "${modules[@]}"
fi

if ! command -v wrk >/dev/null || ! command -v callgrind_control >/dev/null || ! command -v perf >/dev/null; then
  say "wrk, valgrind or perf missing: installing them (scripts/setup.sh --bench)"
  scripts/setup.sh --bench
fi

# --instructions: the front Envoy under callgrind, instructions per request
# of each variant (bench/instructions.py; out/instructions/results.md).
if [ "${1:-}" = "--instructions" ]; then
  build_modules
  shift
  say "running bench/instructions.py $*"
  exec .venv/bin/python bench/instructions.py "$@"
fi

build_modules

say "running bench/run.py $*"
exec .venv/bin/python bench/run.py "$@"
