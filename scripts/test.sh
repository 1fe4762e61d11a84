#!/usr/bin/env bash
# Sets up and runs every test: a Debug build with AddressSanitizer and UndefinedBehaviorSanitizer
# and a Release build, each running the whole ctest suite, and a ThreadSanitizer build of the
# multi-threaded engine's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
# tsan builds and runs only the suites whose code runs on several threads (its build preset
# names them).
for preset in debug release tsan; do
  echo "== ${preset}: build" >&2
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  echo "== ${preset}: test" >&2
  ctest --preset "${preset}" -j "${jobs}"
done
