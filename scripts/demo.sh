#!/usr/bin/env bash
# The demo: Envoy 1.40 with the a2a_affinity filter (RING_HASH; --maglev for
# MAGLEV) in front of three A2A agent replicas on loopback, multi-turn
# conversations from the a2a-sdk client, then the same run without the filter.
# --gateways 2: task calls through two gateways (one restarted half way), with
# task ids that carry their context and with plain UUIDs. --shell
# dynamic-module or --shell ext-proc: the same with the dynamic module, or the
# ext_proc server (as kgateway renders it), instead of the Wasm filter.
# Installs what is missing and builds the module first. Options go to
# demo/run_demo.py, run as `python -m demo.run_demo` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

printf '==> %s\n' "setup (installs only what is missing)"
scripts/setup.sh
# --shell dynamic-module or ext-proc needs the native artifacts too.
shell=wasm
prev=""
for arg in "$@"; do
  case "$arg" in
    --shell=*) shell=${arg#--shell=} ;;
    *) [ "$prev" = --shell ] && shell=$arg ;;
  esac
  prev=$arg
done
printf '==> %s\n' "building the filter"
if [ "$shell" = wasm ]; then
  scripts/build.sh --wasm-only
else
  scripts/build.sh
fi
exec .venv/bin/python -m demo.run_demo "$@"
