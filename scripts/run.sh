#!/usr/bin/env bash
# Sets up vigil and runs it on its embedded default: the shipped fraud rules replayed over
# their sample events, matches printed as NDJSON.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target vigil >/dev/null
for rule in patterns/*.yaml; do
  build/release/src/app/vigil replay --patterns "${rule}" --events "${rule%.yaml}.events.ndjson"
done
