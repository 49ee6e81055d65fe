#!/usr/bin/env bash
# Builds every artifact and prints its path and size:
#   the proxy-wasm module    target/wasm32-wasip1/release/a2a_affinity.wasm
#   the Envoy dynamic module target/release/liba2a_affinity_dynamic.so
#   the ext_proc server      target/release/a2a-affinity-ext-proc
# Usage: scripts/build.sh [--wasm-only]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
# Paths inside the binaries are remapped (scripts/remap-paths.sh), so these
# are the bytes scripts/release.sh ships.
. scripts/remap-paths.sh
remap=$(remap_paths_config "$target")

cargo build --release --target wasm32-wasip1 --quiet -p a2a-affinity --config "$remap"
artifacts=("$target/wasm32-wasip1/release/a2a_affinity.wasm")

if [ "${1:-}" != "--wasm-only" ]; then
  # The native artifacts use their own profile (Cargo.toml: release-native).
  cargo build --profile release-native --quiet --config "$remap" \
    -p a2a-affinity-dynamic-module -p a2a-affinity-ext-proc
  mkdir -p "$target/release"
  for f in liba2a_affinity_dynamic.so a2a-affinity-ext-proc; do
    # A new file, not a write into the old one: cargo may have hard-linked
    # target/release/$f to its own release-profile output.
    rm -f "$target/release/$f"
    cp "$target/release-native/$f" "$target/release/$f"
    artifacts+=("$target/release/$f")
  done
fi

for a in "${artifacts[@]}"; do
  printf '%s (%s bytes)\n' "$a" "$(stat -c %s "$a")"
done
