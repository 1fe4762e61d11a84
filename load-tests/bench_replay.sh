#!/usr/bin/env bash
# bench_replay.sh: end-to-end throughput and memory of `vigil replay` on generated events.
#
# Generates (once, cached under $BENCH_DIR) an NDJSON stream with vigil-generate, then for
# each rule runs
#     taskset -c CPUS <build>/vigil replay --workers N --patterns RULE --events FILE > /dev/null
# under /usr/bin/time -v, and prints one Markdown table row per run: wall-clock seconds,
# events per second, peak resident memory, and the number of matches (counted in a
# second, untimed run).
#
# Usage: load-tests/bench_replay.sh [--build DIR] [--events N] [--keys K] [--seed S]
#            [--fraud-rate R] [--zipf S] [--rules "patterns/a.yaml patterns/b.yaml"]
#            [--all] [--workers N] [--cpu LIST] [--no-count]
# See load-tests/README.md.

set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/vigil-bench}"

build="build/release"
events=10000000
keys=1000000
seed=42
fraud_rate=0.0002
zipf=""
rules=""
all=0
cpu=0
workers=1
count=1

usage() {
  cat <<'EOF'
usage: load-tests/bench_replay.sh [options]
  --build DIR        build directory holding vigil (default build/release)
  --events N         events to generate (default 10000000)
  --keys K           distinct cards (default 1000000)
  --seed S           generator seed (default 42)
  --fraud-rate R     generator fraud rate (default 0.0002)
  --zipf S           skew card keys with Zipf(S) (default: uniform)
  --rules "F ..."    pattern files, one run each (default: the five rules in patterns/)
  --all              one run with all the rules loaded at once, instead of one run each
  --workers N        matching threads (default 1)
  --cpu LIST         CPUs to pin the run to, as taskset takes them: 0 or 0,1 (default 0)
  --no-count         skip the second run that counts matches
environment:
  BENCH_DIR          where generated events are cached (default /tmp/vigil-bench)
Relative paths are taken from the current directory if they exist there, else from the
repository root.
EOF
}

die() {
  echo "bench_replay: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?--build needs a value}"; shift 2 ;;
    --events) events="${2:?--events needs a value}"; shift 2 ;;
    --keys) keys="${2:?--keys needs a value}"; shift 2 ;;
    --seed) seed="${2:?--seed needs a value}"; shift 2 ;;
    --fraud-rate) fraud_rate="${2:?--fraud-rate needs a value}"; shift 2 ;;
    --zipf) zipf="${2:?--zipf needs a value}"; shift 2 ;;
    --rules) rules="${2:?--rules needs a value}"; shift 2 ;;
    --all) all=1; shift ;;
    --cpu) cpu="${2:?--cpu needs a value}"; shift 2 ;;
    --workers) workers="${2:?--workers needs a value}"; shift 2 ;;
    --no-count) count=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ "$events" =~ ^[0-9]+$ && "$events" -gt 0 ]] || die "--events must be a positive integer"
[[ "$keys" =~ ^[0-9]+$ && "$keys" -gt 0 ]] || die "--keys must be a positive integer"
[[ "$workers" =~ ^[0-9]+$ && "$workers" -gt 0 ]] || die "--workers must be a positive integer"

# shellcheck source=load-tests/common.sh
source "$ROOT/load-tests/common.sh"

events_file="$BENCH_DIR/events-n${events}-k${keys}-s${seed}-f${fraud_rate}${zipf:+-z$zipf}-g${source_sum}.ndjson"
if [[ ! -s "$events_file" ]]; then
  echo "bench_replay: generating $events events over $keys keys into $events_file" >&2
  gen_args=(--events "$events" --keys "$keys" --seed "$seed" --fraud-rate "$fraud_rate")
  [[ -n "$zipf" ]] && gen_args+=(--zipf "$zipf")
  "$generator" "${gen_args[@]}" > "$events_file.tmp.$$"
  mv "$events_file.tmp.$$" "$events_file"
fi

if [[ -z "$rules" ]]; then
  rules="patterns/card-testing.yaml patterns/impossible-travel.yaml patterns/account-takeover.yaml patterns/velocity.yaml patterns/brute-force.yaml"
fi
rule_files=()
for rule in $rules; do
  rule_files+=("$(resolve "$rule")")
  [[ -f "${rule_files[-1]}" ]] || die "pattern file not found: $rule"
done

pin=()
if command -v taskset > /dev/null 2>&1 && taskset -c "$cpu" true 2> /dev/null; then
  pin=(taskset -c "$cpu")
else
  echo "bench_replay: taskset unavailable or CPU $cpu not allowed; running unpinned" >&2
fi

gnu_time=0
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true > /dev/null 2>&1; then
  gnu_time=1
else
  echo "bench_replay: /usr/bin/time -v unavailable; timing with the shell and sampling /proc for peak RSS" >&2
fi

now_seconds() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    printf '%s\n' "${EPOCHREALTIME/,/.}"
  else
    date +%s.%N
  fi
}

err_file="$BENCH_DIR/replay.stderr.$$"
time_file="$BENCH_DIR/replay.time.$$"
trap 'rm -f "$err_file" "$time_file"' EXIT

# run_timed PATTERN...: runs one replay; sets run_seconds, run_rss_kb and run_status.
run_timed() {
  local cmd=(${pin[@]+"${pin[@]}"} "$vigil" replay --workers "$workers" --patterns "$@" --events "$events_file")
  run_status=0
  if [[ $gnu_time -eq 1 ]]; then
    /usr/bin/time -v -o "$time_file" "${cmd[@]}" > /dev/null 2> "$err_file" || run_status=$?
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34"
    run_seconds="$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, part, ":"); s = 0
        for (i = 1; i <= n; i++) s = s * 60 + part[i]
        printf "%.2f", s }' "$time_file")"
    run_rss_kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$time_file")"
  else
    # Peak RSS is the process's VmHWM, sampled until it exits; growth in its last
    # sampling interval can be missed.
    local start end pid hwm
    run_rss_kb=0
    start="$(now_seconds)"
    "${cmd[@]}" > /dev/null 2> "$err_file" &
    pid=$!
    while kill -0 "$pid" 2> /dev/null; do
      hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)"
      [[ -n "$hwm" && "$hwm" -gt "$run_rss_kb" ]] && run_rss_kb="$hwm"
      sleep 0.05
    done
    wait "$pid" || run_status=$?
    end="$(now_seconds)"
    run_seconds="$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')"
  fi
}

count_matches() {
  if [[ $count -eq 0 ]]; then
    echo "-"
    return
  fi
  ${pin[@]+"${pin[@]}"} "$vigil" replay --workers "$workers" --patterns "$@" --events "$events_file" 2> /dev/null | wc -l | tr -d ' '
}

# One row: LABEL PATTERN...
bench() {
  local label="$1"
  shift
  echo "bench_replay: running $label" >&2
  run_timed "$@"
  if [[ $run_status -ne 0 ]]; then
    echo "bench_replay: vigil exited with status $run_status for $label; last lines of its stderr:" >&2
    tail -n 5 "$err_file" >&2
    printf '| %s | %s | %s | failed (exit %s) | - | - | - |\n' "$label" "$events" "$keys" "$run_status"
    failures=$((failures + 1))
    return
  fi
  local rate rss_mb matches
  rate="$(awk -v n="$events" -v s="$run_seconds" 'BEGIN {if (s > 0) printf "%.0f", n / s; else print "-"}')"
  rss_mb="$(awk -v k="$run_rss_kb" 'BEGIN {printf "%.1f", k / 1024}')"
  matches="$(count_matches "$@")"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$events" "$keys" "$run_seconds" "$rate" "$rss_mb" "$matches"
}

failures=0
echo "events: $events_file ($(wc -c < "$events_file") bytes)"
echo "vigil:  $vigil"
if [[ -r /proc/cpuinfo ]]; then
  echo "cpu:    $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)${pin[0]:+ (pinned to CPU $cpu)}, $workers worker(s)"
fi
echo
echo "| rule(s) | events | keys | seconds | events/s | peak RSS MB | matches |"
echo "|---|---|---|---|---|---|---|"
if [[ $all -eq 1 ]]; then
  labels=()
  for f in "${rule_files[@]}"; do labels+=("$(basename "$f" .yaml)"); done
  bench "all: $(IFS=,; echo "${labels[*]}")" "${rule_files[@]}"
else
  for f in "${rule_files[@]}"; do
    bench "$(basename "$f" .yaml)" "$f"
  done
fi
[[ $failures -eq 0 ]]
