#!/usr/bin/env bash
# bench_workers.sh: how `vigil replay` scales with worker threads.
#
# Runs bench_replay.sh (one stream, one rule set) with each worker count in turn, REPEAT
# times round-robin, so that a noisy neighbour slows every count alike; a run with N workers
# may use CPUs 0..N-1. Prints, per worker count, the median and best events/s and the
# median's ratio to one worker's.
#
# Usage: load-tests/bench_workers.sh [--workers "1 2"] [--repeat R] [bench_replay.sh options]
# e.g.   load-tests/bench_workers.sh --events 1000000 --keys 100000 --all
#        load-tests/bench_workers.sh --events 10000000 --keys 1000000 --zipf 0.99 \
#            --rules patterns/card-testing.yaml
# See load-tests/README.md ("Workers").

set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

counts="1 2"
repeat=5
passed=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) counts="${2:?--workers needs a value}"; shift 2 ;;
    --repeat) repeat="${2:?--repeat needs a value}"; shift 2 ;;
    --cpu | --no-count) echo "bench_workers: $1 is set per worker count" >&2; exit 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passed+=("$1"); shift ;;
  esac
done
[[ "$repeat" =~ ^[0-9]+$ && "$repeat" -gt 0 ]] || { echo "bench_workers: --repeat must be a positive integer" >&2; exit 2; }

declare -A rates
header=""
for ((r = 1; r <= repeat; r++)); do
  for n in $counts; do
    output="$("$ROOT/load-tests/bench_replay.sh" ${passed[@]+"${passed[@]}"} --workers "$n" \
              --cpu "0-$((n - 1))" --no-count)"
    [[ -z "$header" ]] && header="$(grep -E '^(events|cpu):' <<< "$output" | sed -E 's/ \(pinned.*$//; s/, [0-9]+ worker\(s\)$//')"
    rate="$(tail -n 1 <<< "$output" | awk -F'|' '{gsub(/ /, "", $6); print $6}')"
    [[ "$rate" =~ ^[0-9]+$ ]] || { echo "bench_workers: run failed: $(tail -n 1 <<< "$output")" >&2; exit 1; }
    rates[$n]="${rates[$n]:-} $rate"
    echo "bench_workers: round $r, $n worker(s): $rate events/s" >&2
  done
done

echo "$header"
echo
echo "| workers | median events/s | best events/s | median vs 1 worker | runs |"
echo "|---|---|---|---|---|"
base=""
for n in $counts; do
  read -r median best < <(tr ' ' '\n' <<< "${rates[$n]}" | grep . | sort -n |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f %d\n", m, v[NR] }')
  [[ -z "$base" && "$n" == 1 ]] && base="$median"
  ratio="-"
  [[ -n "$base" ]] && ratio="$(awk -v a="$median" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')"
  echo "| $n | $median | $best | $ratio | $repeat |"
done
