#!/usr/bin/env bash
# Installs the Debian packages vigil needs. Idempotent; prints nothing when all are there.
#   scripts/install-deps.sh            build, test and benchmark dependencies
#   scripts/install-deps.sh --runtime  only the shared libraries the vigil binary loads
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libyaml-cpp-dev libsimdjson-dev libre2-dev libboost-dev librocksdb-dev
  doctest-dev libbenchmark-dev libssl-dev
  clang-14 libclang-rt-14-dev
  time
  kcat librdkafka-dev maven openjdk-17-jdk-headless python3
)
RUNTIME_PACKAGES=(libyaml-cpp0.7 libsimdjson14 libre2-9 librocksdb7.8 libstdc++6 librdkafka1 libssl3)

packages=("${BUILD_PACKAGES[@]}")
if [[ "${1:-}" == "--runtime" ]]; then
  packages=("${RUNTIME_PACKAGES[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
