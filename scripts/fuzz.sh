#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer and UndefinedBehaviorSanitizer) and
# runs each for a bounded time, from the seeds in tests/fuzz/seeds (and patterns/) plus a
# corpus kept in build/fuzz/corpus, the only directory libFuzzer writes to (it grows from run
# to run on the same machine).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]    default 60
#   FUZZ_TARGETS="pattern_fuzz event_fuzz" scripts/fuzz.sh 600
# A crash, a sanitizer report, a hang or a leak fails the script; the input that caused it is
# left in build/fuzz/findings/ (replay it with build/fuzz/tests/fuzz/TARGET FILE, then make
# it a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-pattern_fuzz condition_fuzz event_fuzz http_fuzz}"

cmake --preset fuzz > /dev/null
cmake --build --preset fuzz -j2

mkdir -p build/fuzz/findings
status=0
for target in $targets; do
  seeds="tests/fuzz/seeds/${target%_fuzz}"
  # The shipped rules seed the pattern target where they are, not as copies.
  [[ "$target" == pattern_fuzz ]] && seeds+=" patterns"
  corpus="build/fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${seconds}s"
  if ! build/fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
      -artifact_prefix="build/fuzz/findings/$target-" -print_final_stats=1 "$corpus" $seeds \
      > "build/fuzz/$target.log" 2>&1; then
    echo "fuzz: $target FAILED; the end of its log:" >&2
    tail -n 40 "build/fuzz/$target.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "build/fuzz/$target.log" | tr '\n' ' '
    echo
  fi
done
exit $status
