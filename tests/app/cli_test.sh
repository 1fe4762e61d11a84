#!/usr/bin/env bash
# The vigil command line as a user meets it: exit codes, help, and error formats.
# usage: cli_test.sh VIGIL_BINARY SOURCE_DIR
set -u
vigil=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

expect() {  # expect NAME WANT_EXIT GREP_PATTERN_ON_OUTPUT -- COMMAND...
  local name=$1 want=$2 pattern=$3
  shift 4
  "$@" >"$tmp/out" 2>&1
  local got=$?
  if [[ $got -ne $want ]]; then
    echo "FAIL: $name: exit $got, want $want"; cat "$tmp/out"; failures=$((failures + 1)); return
  fi
  if [[ -n "$pattern" ]] && ! grep -qE -- "$pattern" "$tmp/out"; then
    echo "FAIL: $name: output lacks /$pattern/"; cat "$tmp/out"; failures=$((failures + 1)); return
  fi
  echo "ok: $name"
}

printf 'id: p\nsequence:\n  - begin: a\n    where: amount >> 5\n' >"$tmp/bad.yaml"
printf '{"ts":1,"amount":3}\n{"ts":2,"amount":9}\n' >"$tmp/events.ndjson"
printf 'id: big\nsequence:\n  - begin: a\n    where: amount > 5\n' >"$tmp/big.yaml"

expect "help" 0 "usage: vigil COMMAND" -- "$vigil" --help
expect "replay help" 0 "--max-out-of-orderness" -- "$vigil" replay --help
expect "validate help" 0 "file:line:column" -- "$vigil" validate --help
expect "no command" 2 "usage" -- "$vigil"
expect "unknown command" 2 "unknown command 'frob'" -- "$vigil" frob
expect "validate shipped rules" 0 "5 patterns valid" -- "$vigil" validate "$src/patterns"
expect "validate reports file:line:column" 2 "bad.yaml:4:20: unexpected" -- "$vigil" validate "$tmp/bad.yaml"
expect "replay with a bad pattern" 2 "bad.yaml:4:20: unexpected" -- "$vigil" replay --patterns "$tmp/bad.yaml" --events "$tmp/events.ndjson"
expect "replay without --events" 2 "--events is required" -- "$vigil" replay --patterns "$tmp/big.yaml"
expect "replay with a bad duration" 2 "bad duration 'soon'" -- "$vigil" replay --patterns "$tmp/big.yaml" --events - --max-out-of-orderness soon
expect "replay from a missing file" 2 "cannot open" -- "$vigil" replay --patterns "$tmp/big.yaml" --events "$tmp/none.ndjson"
expect "replay from standard input" 0 '"amount":9' -- bash -c "'$vigil' replay --patterns '$tmp/big.yaml' --events - < '$tmp/events.ndjson'"

echo "$((12 - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
