#!/usr/bin/env bash
# Builds the coverage-guided fuzz targets (fuzz/, libFuzzer on stable Rust
# with SanitizerCoverage) and runs each for a while.
#
#   scripts/fuzz.sh [--seconds N] [target...]
#
# Targets: stream scan proto learner config (default: all), N seconds each
# (default 60). The corpus each run grows is kept in fuzz/corpus/<target>
# (FUZZ_CORPUS sets another root) and read again by the next run; the seed
# inputs (testkit's bodies) are written afresh each time, and the inputs in
# fuzz/findings/<target>/ run with them. A failing input is saved to
# fuzz/artifacts/<target>/ and the script exits non-zero. One line per
# target reports libFuzzer's final counts; full logs are in fuzz/target/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(stream scan proto learner config)

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$root/fuzz/target
corpus_root=${FUZZ_CORPUS:-$root/fuzz/corpus}

# SanitizerCoverage through stable codegen flags (what `cargo fuzz` sets,
# minus the sanitizers that need nightly): edge counters for coverage, the
# PC table for libFuzzer's feature tracking, compare tracing so that the
# fuzzer learns the keys and magic values the code compares against.
# `--target` keeps the flags off build scripts and proc macros.
sancov="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
sancov+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
sancov+=" -Cllvm-args=-sanitizer-coverage-pc-table"
sancov+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "==> building fuzz targets: ${targets[*]}"
(cd fuzz && RUSTFLAGS="$sancov" cargo build --quiet --release --locked \
  --target "$host" --target-dir "$target_dir" "${bins[@]}")
# The seed writer runs uninstrumented (it links no libFuzzer runtime).
seeds=$target_dir/seeds-corpus
rm -rf "$seeds"
(cd fuzz && cargo run --quiet --release --locked --no-default-features --bin seeds \
  --target-dir "$target_dir/seeds" -- "$seeds")

mkdir -p "$target_dir/logs"
status=0
for t in "${targets[@]}"; do
  corpus=$corpus_root/$t
  artifacts=$root/fuzz/artifacts/$t
  log=$target_dir/logs/$t.log
  mkdir -p "$corpus" "$artifacts" "$seeds/$t"
  # Inputs that once failed are run first, every time (fuzz/findings/).
  findings=()
  [ -d "$root/fuzz/findings/$t" ] && findings=("$root/fuzz/findings/$t")
  echo "==> fuzzing $t for ${seconds}s"
  if "$target_dir/$host/release/$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -dict="$root/fuzz/fuzz.dict" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "$seeds/$t" "${findings[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (input in fuzz/artifacts/$t/, log $log)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
  echo "    $t: ${runs:-?} runs, $last, corpus $(find "$corpus" -type f | wc -l) files: $result"
  if [ "$result" != ok ]; then
    grep -E "panicked|assert|ERROR" "$log" | head -5 | sed 's/^/    /'
  fi
done
exit $status
