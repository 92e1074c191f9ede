#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for N seconds each with cargo-fuzz.
#
#   fuzz/run.sh [-t SECONDS] [TARGET...]      default: 20 s, all targets
#
# The committed seeds in fuzz/corpus/<target>/ are read, never written: new inputs
# libFuzzer finds go to fuzz/scratch/<target>/ (git-ignored). Crashes are written to
# fuzz/artifacts/<target>/ and make the script exit non-zero. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use
# the nightly-only sanitizer flags. Prints one line per target with execs/s.
set -euo pipefail
cd "$(dirname "$0")"

seconds=20
if [ "${1:-}" = "-t" ]; then
  seconds=$2
  shift 2
fi
all=(envelope crypto_text cda index csv archive)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1
# The sqlite C code linked through lgwan-agent trips ASan's ODR check (two static
# `aiOff` tables in one amalgamation); it is not our code and not a memory error.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"


failed=0
for t in "${targets[@]}"; do
  mkdir -p "scratch/$t" "artifacts/$t"
  log="scratch/$t.log"
  # -rss_limit_mb bounds memory (a parser that allocates per input size would trip it);
  # -timeout flags any single input taking over 10 s.
  if cargo fuzz run "$t" "scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
  printf '%-12s %-5s %8s runs %7s execs/s  cov %s  (log: fuzz/%s)\n' "$t" "$status" "$runs" "$speed" "$cov" "$log"
  if [ "$status" = CRASH ]; then
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$log" | head -n 6 | sed 's/^/    /'
  fi
done
exit $failed
