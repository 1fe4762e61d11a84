#!/usr/bin/env bash
# Sets up vigil and runs the service on its embedded default: no Kafka, events over HTTP,
# the shipped fraud rules loaded from patterns/, state and alerts in ./vigil-data.
# Extra arguments go to `vigil serve` (for example --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target vigil >/dev/null
cat >&2 <<'HELP'
vigil: try, from another terminal:
  curl -s localhost:8080/patterns
  curl -s -XPOST -H 'Content-Type: application/x-ndjson' \
       --data-binary @patterns/card-testing.events.ndjson localhost:8080/events
  curl -s 'localhost:8080/alerts?limit=5'
Stop with Ctrl-C.
HELP
exec build/release/src/app/vigil serve --patterns-dir patterns --data-dir vigil-data "$@"
