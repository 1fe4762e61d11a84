#!/usr/bin/env bash
# Sets up and runs every test: a Debug build with AddressSanitizer and UndefinedBehaviorSanitizer
# and a Release build, each running the whole ctest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
for preset in debug release; do
  echo "== ${preset}: build" >&2
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  echo "== ${preset}: test" >&2
  ctest --preset "${preset}" -j "${jobs}"
done
