#!/usr/bin/env bash
# Dependencies point one way: common <- nfa <- engine <- state <- server <- app, and
# common <- kafka <- server (kafka knows bytes and offsets, nothing of events). Fails on any include
# that points the other way. usage: architecture_check.sh SOURCE_DIR
set -u
src=$1/src
failures=0
passed=0
check() {  # check MODULE FORBIDDEN_MODULE...
  local module=$1
  shift
  [[ -d "$src/$module" ]] || return
  for forbidden in "$@"; do
    if grep -rnE "#include \"$forbidden/" "$src/$module" >/tmp/arch.$$ 2>/dev/null; then
      echo "FAIL: $module must not include $forbidden:"; cat /tmp/arch.$$
      failures=$((failures + 1))
    else
      echo "ok: $module does not include $forbidden"
      passed=$((passed + 1))
    fi
  done
  rm -f /tmp/arch.$$
}
check common nfa engine state server app
check nfa engine state server app
check engine state server app
check state kafka server app
check kafka nfa engine state server app
check server app
if grep -rnE "#include <(boost|rocksdb|librdkafka)" "$src/nfa" "$src/common" "$src/engine" >/dev/null 2>&1; then
  echo "FAIL: nfa and common use no Boost, RocksDB or librdkafka"; failures=$((failures + 1))
else
  passed=$((passed + 1))
fi
# ctest names each doctest case after it, cut at a ';' (a CMake list separator): such a case
# would be filtered out and never run, its entry passing empty.
if grep -rnE 'TEST_CASE\("[^"]*;' "$1/tests" >/tmp/arch.$$ 2>/dev/null; then
  echo "FAIL: test case names must not hold ';':"; cat /tmp/arch.$$
  failures=$((failures + 1))
else
  passed=$((passed + 1))
fi
rm -f /tmp/arch.$$
echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]
