#!/usr/bin/env bash
# Builds every released artifact into dist/ and prints what it wrote:
#   a2a_affinity.wasm                 the proxy-wasm module
#   liba2a_affinity_dynamic.so        the Envoy dynamic module
#   a2a-affinity-ext-proc             the ext_proc server (x86-64 glibc Linux)
#   oci/a2a-affinity-wasm/            OCI image layouts, tagged with the version
#   oci/a2a-affinity-dynamic-module/  (scripts/oci_image.py; push them with
#   oci/a2a-affinity-ext-proc/        oras, crane or skopeo, see README.md)
#   sbom.cdx.json                     CycloneDX SBOM of the Rust dependencies
#                                     and the Debian files in the images
#   SHA256SUMS                        of every other file in dist/
#
# Reproducible: the same commit gives the same bytes. The binaries are built
# with --remap-path-prefix for the source, CARGO_HOME and target directories
# (scripts/remap-paths.sh; no checkout path inside them), exactly as
# scripts/build.sh builds them, in its target directory ($CARGO_TARGET_DIR or
# target/; $RELEASE_TARGET_DIR overrides it); every timestamp is
# SOURCE_DATE_EPOCH (default: the commit time); tar and gzip are written
# deterministically. The Debian files in the images (busybox-static, glibc,
# the server's libgcc_s.so.1) and the unwinder linked into the dynamic module
# (GCC's libgcc_eh.a, crates/dynamic-abi/build.rs) come from the build
# host's Debian 12 packages, so two hosts agree when their packages do. It
# runs on an x86-64 Debian host only (the images say linux/amd64) and stops
# elsewhere.
#
# Usage: scripts/release.sh [--out DIR] [--check-reproducible]
#   --out DIR             instead of dist/ in the repository
#   --check-reproducible  then copies the sources (the files git tracks or
#                         would track) to a temporary directory, builds the
#                         release there again into an empty target directory
#                         and fails unless both SHA256SUMS are identical.
set -euo pipefail

out=""
check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "--out needs a directory" >&2; exit 2; }; out=$(realpath -m "$2"); shift 2 ;;
    --check-reproducible) check=1; shift ;;
    *) echo "usage: scripts/release.sh [--out DIR] [--check-reproducible]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
out=${out:-$PWD/dist}
say() { printf '==> %s\n' "$*" >&2; }

# The images and the SBOM describe linux/amd64 with Debian 12's files, and
# the native artifacts are built for the host: build where that is true.
if [ "$(uname -m)" != x86_64 ]; then
  echo "scripts/release.sh builds the x86-64 Linux release; this host is $(uname -m)" >&2
  exit 1
fi
if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
  echo "scripts/release.sh takes the images' Debian files from this host's packages: it needs Debian (12) with dpkg and apt-get" >&2
  exit 1
fi

# The version: the workspace's, which every shipped crate inherits.
version=$(cargo metadata --no-deps --format-version 1 --offline | python3 -c '
import json, sys
shipped = {"a2a-affinity", "a2a-affinity-dynamic-module", "a2a-affinity-ext-proc"}
versions = {p["name"]: p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] in shipped}
if set(versions) != shipped or len(set(versions.values())) != 1:
    sys.exit(f"the shipped crates must exist and share one version: {versions}")
print(versions.popitem()[1])')

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH
if [ -d .git ] || [ -f .git ]; then
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    say "warning: tracked files differ from the last commit; dist/ will not match a commit"
  fi
fi

# The target directory scripts/build.sh uses, with the same flags, so a
# release after a build (scripts/test.sh) reuses its binaries.
target=${RELEASE_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
mkdir -p "$target"
target=$(cd "$target" && pwd)
deps=$(mkdir -p "${RELEASE_DEPS_DIR:-$target/release-deps}" && cd "${RELEASE_DEPS_DIR:-$target/release-deps}" && pwd)
. scripts/remap-paths.sh
remap=$(remap_paths_config "$target")

say "a2a-affinity $version, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, target dir $target"

# The SBOM reads the whole locked graph (cargo metadata, offline), which
# needs every package of Cargo.lock on disk; a build fetches only those of
# the platforms it builds for.
say "fetching every locked dependency"
cargo fetch --locked --quiet
say "building the Wasm module (release profile)"
cargo build --locked --quiet --release --target wasm32-wasip1 -p a2a-affinity \
  --target-dir "$target" --config "$remap"
say "building the dynamic module and the ext_proc server (release-native profile)"
cargo build --locked --quiet --profile release-native \
  -p a2a-affinity-dynamic-module -p a2a-affinity-ext-proc \
  --target-dir "$target" --config "$remap"

wasm=$target/wasm32-wasip1/release/a2a_affinity.wasm
so=$target/release-native/liba2a_affinity_dynamic.so
server=$target/release-native/a2a-affinity-ext-proc

# busybox-static (Debian 12) gives the dynamic module image its `cp`;
# downloaded once as a package, not installed.
if [ ! -x "$deps/busybox" ] || [ ! -s "$deps/busybox.version" ]; then
  say "fetching Debian's busybox-static package"
  dl=$(mktemp -d)
  if ! (cd "$dl" && apt-get download -q busybox-static >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$dl" && apt-get download -q busybox-static >/dev/null)
  fi
  deb=$(ls "$dl"/busybox-static_*.deb)
  dpkg-deb -x "$deb" "$dl/root"
  cp "$dl/root/bin/busybox" "$deps/busybox"
  dpkg-deb -f "$deb" Version > "$deps/busybox.version"
  rm -rf "$dl"
fi

# The glibc runtime the server links, as the loader resolves it here.
runtime_libs=()
debs=("busybox-static=$(cat "$deps/busybox.version")=oci/a2a-affinity-dynamic-module")
while read -r lib; do
  runtime_libs+=(--runtime-lib "$(readlink -f "$lib")")
  pkg=$(dpkg -S "$lib" | head -1 | cut -d: -f1)
  debs+=("$pkg=$(dpkg-query -W -f='${Version}' "$pkg")=oci/a2a-affinity-ext-proc")
done < <(ldd "$server" | grep -o '/[^ ]*' | sort -u)
# The dynamic module needs glibc only: its unwinder is GCC's static one,
# linked in (crates/dynamic-abi/build.rs), so the image carries no
# libgcc_s.so.1 and the SBOM names the package the unwinder came from.
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
other=$(printf '%s\n' $needed | grep -vxE 'ld-linux-x86-64\.so\.2|lib(c\.so\.6|m\.so\.6|dl\.so\.2|pthread\.so\.0|rt\.so\.1)' || true)
if [ -n "$other" ] || [[ " $needed" != *" libc.so.6 "* ]]; then
  echo "liba2a_affinity_dynamic.so needs $needed(glibc's libraries only expected)" >&2
  exit 1
fi
unwinder=$(readlink -f "$(cc -print-file-name=libgcc_eh.a)")
pkg=$(dpkg -S "$unwinder" | head -1 | cut -d: -f1)
pkg="$pkg=$(dpkg-query -W -f='${Version}' "$pkg")"
debs+=("$pkg=liba2a_affinity_dynamic.so" "$pkg=oci/a2a-affinity-dynamic-module")

say "writing $out"
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/SHA256SUMS" ]; then
  echo "$out is not empty and holds no earlier release (no SHA256SUMS): not replacing it" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
install -m 0644 "$wasm" "$out/a2a_affinity.wasm"
install -m 0755 "$so" "$out/liba2a_affinity_dynamic.so"
install -m 0755 "$server" "$out/a2a-affinity-ext-proc"
python3 scripts/oci_image.py --dist "$out" --version "$version" --epoch "$SOURCE_DATE_EPOCH" \
  --wasm "$wasm" --dynamic-module "$so" \
  --busybox "$deps/busybox" --ext-proc "$server" "${runtime_libs[@]}" > "$out/.images"
deb_args=()
for d in "${debs[@]}"; do deb_args+=(--deb "$d"); done
python3 scripts/sbom.py --version "$version" --epoch "$SOURCE_DATE_EPOCH" \
  --out "$out/sbom.cdx.json" "${deb_args[@]}" >/dev/null
(cd "$out" && find . -type f ! -name SHA256SUMS ! -name .images -printf '%P\n' | LC_ALL=C sort \
  | xargs -d '\n' sha256sum > SHA256SUMS)

printf 'a2a-affinity %s in %s (SOURCE_DATE_EPOCH=%s)\n' "$version" "$out" "$SOURCE_DATE_EPOCH"
for f in a2a_affinity.wasm liba2a_affinity_dynamic.so a2a-affinity-ext-proc sbom.cdx.json; do
  printf '  %-28s %9s bytes  sha256:%s\n' "$f" "$(stat -c %s "$out/$f")" \
    "$(grep "  $f\$" "$out/SHA256SUMS" | cut -d' ' -f1)"
done
while read -r image digest; do
  printf '  oci/%-40s manifest %s\n' "$image" "$digest"
done < "$out/.images"
rm -f "$out/.images"

if [ "$check" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  say "reproducibility: building again from a copy of the sources in $tmp"
  mkdir "$tmp/src"
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$tmp/src"
  (cd "$tmp/src" && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH RELEASE_TARGET_DIR="$tmp/target" \
    RELEASE_DEPS_DIR="$deps" scripts/release.sh --out "$tmp/dist" >/dev/null)
  if ! diff -u "$out/SHA256SUMS" "$tmp/dist/SHA256SUMS"; then
    echo "NOT reproducible: the second build differs (above)" >&2
    exit 1
  fi
  echo "reproducible: a second build from $tmp/src into an empty target dir gave the same SHA256SUMS ($(wc -l < "$out/SHA256SUMS") files)"
fi
