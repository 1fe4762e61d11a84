#!/usr/bin/env bash
# Sets up and runs every test: a Debug build with AddressSanitizer and UndefinedBehaviorSanitizer
# and a Release build, each running the whole ctest suite, and a ThreadSanitizer build of the
# multi-threaded engine's tests, then each fuzz target for a minute and a one-minute soak.
# The Kafka tests run against a real single-node broker, which this script starts
# (scripts/kafka.sh) on a port of its own and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

export VIGIL_KAFKA_DIR="${VIGIL_KAFKA_DIR:-/tmp/vigil-test-kafka}"
export VIGIL_KAFKA_PORT="${VIGIL_KAFKA_PORT:-19092}"
scripts/kafka.sh start
trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
export VIGIL_TEST_KAFKA="127.0.0.1:${VIGIL_KAFKA_PORT}"

jobs=$(nproc)
# tsan builds and runs only the suites whose code runs on several threads (its build preset
# names them).
for preset in debug release tsan; do
  echo "== ${preset}: build" >&2
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  echo "== ${preset}: test" >&2
  # A failed test gets a second run; a flaky one shows as failed-then-passed in the log.
  ctest --preset "${preset}" -j "${jobs}" --repeat until-pass:2
done

# Fuzzing: every libFuzzer target for a bounded time (clang, ASan and UBSan).
echo "== fuzz" >&2
scripts/fuzz.sh "${VIGIL_FUZZ_SECONDS:-60}"

# Soak, the short setting: a steady rate with rule hot reloads; fails if the server falls
# over, refuses work or leaks file handles (load-tests/soak.py --duration 30m is the record).
echo "== soak" >&2
python3 load-tests/soak.py --build build/release --duration "${VIGIL_SOAK_SECONDS:-60}" --check --out build/soak
