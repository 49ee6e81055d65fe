# Sourced by scripts/build.sh and scripts/release.sh. remap_paths_config
# TARGET_DIR prints a `cargo --config` value that rewrites the checkout,
# CARGO_HOME and target directory paths rustc embeds (panic locations, debug
# sections) to fixed ones, so the artifacts do not depend on where they were
# built: part of what makes scripts/release.sh reproducible. The last
# matching prefix wins, so the target directory may sit inside the checkout.
# cfg(all()) rustflags are added to .cargo/config.toml's wasm32 ones.
remap_paths_config() {
  local root target cargo_home
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  target=$(cd "$1" && pwd)
  cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)
  printf "%s" "target.'cfg(all())'.rustflags=['--remap-path-prefix=$root=/build/a2a-affinity','--remap-path-prefix=$cargo_home=/cargo','--remap-path-prefix=$target=/build/target']"
}
