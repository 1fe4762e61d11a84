#!/usr/bin/env bash
# compare.sh: vigil beside Flink CEP, Esper and Siddhi on the same generated events and the
# same rules, one core each.
#
# For every stream size and key count it generates (once, cached) an NDJSON stream with
# vigil-generate, then for every rule runs `vigil replay` and each peer harness pinned to one
# CPU under /usr/bin/time, checks that each peer found the same matches as vigil, shrinks
# any difference to a smallest input that still shows it, and prints a Markdown table:
# engine, rule, events/s, ratio to vigil, peak RSS, matches.
#
# Usage: load-tests/peers/compare.sh [--build DIR] [--events "N ..."] [--keys "K ..."]
#            [--rules "R ..."] [--engines "E ..."] [--cpu N] [--heap SIZE] [--peer-timeout S]
#            [--no-shrink]
# See load-tests/peers/README.md.

set -euo pipefail
# ${var//pattern/replacement} must not turn '&' in a replacement into the match (bash 5.2).
shopt -u patsub_replacement 2> /dev/null || true

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly PEERS="$ROOT/load-tests/peers"
BENCH_DIR="${BENCH_DIR:-/tmp/vigil-bench}"

build="build/release"
sizes="1000000 10000000"
key_counts="10000 1000000"
rules="card-testing login-payment-transfer rising-payments login-payment-no-logout"
engines="flink esper siddhi"
cpu=0
heap="12g"
peer_timeout=1800
shrink=1

usage() {
  cat <<'USAGE'
usage: load-tests/peers/compare.sh [options]
  --build DIR        build directory holding vigil (default build/release)
  --events "N ..."   stream sizes (default "1000000 10000000")
  --keys "K ..."     distinct cards per stream (default "10000 1000000")
  --rules "R ..."    rules (default: card-testing login-payment-transfer rising-payments
                     login-payment-no-logout)
  --engines "E ..."  peers among flink, esper, siddhi (default: all three)
  --cpu N            the one CPU every engine runs on (default 0)
  --heap SIZE        peers' maximum Java heap (default 12g)
  --peer-timeout S   stop a peer run after S seconds, reported as not finished (default 1800)
  --no-shrink        report differing matches without searching for a smallest input
environment:
  BENCH_DIR          generated streams and run outputs (default /tmp/vigil-bench)
USAGE
}

die() {
  echo "compare: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?--build needs a value}"; shift 2 ;;
    --events) sizes="${2:?--events needs a value}"; shift 2 ;;
    --keys) key_counts="${2:?--keys needs a value}"; shift 2 ;;
    --rules) rules="${2:?--rules needs a value}"; shift 2 ;;
    --engines) engines="${2:?--engines needs a value}"; shift 2 ;;
    --cpu) cpu="${2:?--cpu needs a value}"; shift 2 ;;
    --heap) heap="${2:?--heap needs a value}"; shift 2 ;;
    --peer-timeout) peer_timeout="${2:?--peer-timeout needs a value}"; shift 2 ;;
    --no-shrink) shrink=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

for tool in java mvn python3 taskset /usr/bin/time; do
  command -v "$tool" > /dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

# shellcheck source=load-tests/common.sh
source "$ROOT/load-tests/common.sh"

echo "compare: building the peer harnesses (Maven fetches the engines once)" >&2
mvn -q -B -f "$PEERS/pom.xml" package > "$BENCH_DIR/peers-build.log" 2>&1 \
  || { tail -n 20 "$BENCH_DIR/peers-build.log" >&2; die "the peer harnesses did not build"; }

declare -A harness_class=(
  [flink]=vigil.peers.flink.FlinkHarness
  [esper]=vigil.peers.esper.EsperHarness
  [siddhi]=vigil.peers.siddhi.SiddhiHarness
)
declare -A engine_label=([flink]="Flink CEP 1.20" [esper]="Esper 9.0" [siddhi]="Siddhi 5.1")
for engine in $engines; do
  [[ -n "${harness_class[$engine]:-}" ]] || die "unknown engine: $engine"
done

rule_file() {
  if [[ -f "$ROOT/patterns/$1.yaml" ]]; then
    printf '%s\n' "$ROOT/patterns/$1.yaml"
  else
    printf '%s\n' "$PEERS/rules/$1.yaml"
  fi
}
for rule in $rules; do
  [[ -f "$(rule_file "$rule")" ]] || die "no pattern file for rule $rule"
done

# Commands with {events} and {out}, for a run here and for smallest_input.py.
vigil_command() {  # RULE
  printf '%q replay --patterns %q --events {events} > {out}' "$vigil" "$(rule_file "$1")"
}
peer_command() {  # ENGINE RULE
  printf 'java -Xmx%s -cp %q %s --rule %q --events {events} --out {out}' "$heap" \
    "$PEERS/$1/target/classes:$(cat "$PEERS/$1/target/classpath.txt")" "${harness_class[$1]}" "$2"
}

run_dir="$BENCH_DIR/peers/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
time_file="$run_dir/time"

# timed COMMAND [LIMIT]: runs it pinned, with {events} and {out} filled in, for at most LIMIT
# seconds (status 124 after); sets peak_rss_mb and wall_seconds, and leaves standard output in
# $run_dir/stdout.
timed() {
  local command="${1//\{events\}/$(printf '%q' "$events_file")}" status=0
  command="${command//\{out\}/$(printf '%q' "$out")}"
  /usr/bin/time -f '%e %M' -o "$time_file" timeout "${2:-0}" taskset -c "$cpu" bash -c "$command" \
    > "$run_dir/stdout" 2> "$run_dir/stderr" || status=$?
  if [[ $status -ne 0 ]]; then
    [[ $status -ne 124 ]] && tail -n 5 "$run_dir/stderr" >&2
    return $status
  fi
  read -r wall_seconds peak_kb < "$time_file"
  peak_rss_mb=$((peak_kb / 1024))
}

findings=()
declare -A shrunk=()  # engine/rule pairs already shrunk: one smallest input each is enough
table="$run_dir/table.md"
{
  echo "| events | keys | rule | engine | events/s | ratio to vigil | peak RSS MB | matches | same matches as vigil |"
  echo "|---|---|---|---|---|---|---|---|---|"
} | tee "$table"

row() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@" | tee -a "$table"
}

for events in $sizes; do
  for keys in $key_counts; do
    events_file="$BENCH_DIR/events-n${events}-k${keys}-s42-f0.0002-g${source_sum}.ndjson"
    if [[ ! -s "$events_file" ]]; then
      echo "compare: generating $events events over $keys keys" >&2
      "$generator" --events "$events" --keys "$keys" --seed 42 > "$events_file.tmp.$$"
      mv "$events_file.tmp.$$" "$events_file"
    fi
    for rule in $rules; do
      echo "compare: $rule on $events events, $keys keys" >&2
      vigil_out="$run_dir/vigil-$rule-$events-$keys.ndjson"
      out="$vigil_out"
      if ! timed "$(vigil_command "$rule")"; then
        row "$events" "$keys" "$rule" vigil failed - - - -
        continue
      fi
      # vigil is timed as the whole process, reading and parsing the file included.
      vigil_rate=$(awk -v n="$events" -v s="$wall_seconds" 'BEGIN {printf "%.0f", n / s}')
      row "$events" "$keys" "$rule" "vigil" "$vigil_rate" "1" "$peak_rss_mb" "$(wc -l < "$vigil_out")" "-"
      for engine in $engines; do
        out="$run_dir/$engine-$rule-$events-$keys.ndjson"
        status=0
        timed "$(peer_command "$engine" "$rule")" "$peer_timeout" || status=$?
        if [[ $status -eq 124 ]]; then
          row "$events" "$keys" "$rule" "${engine_label[$engine]}" \
            "did not finish in ${peer_timeout} s (JVM start and file read included)" - - - -
          continue
        elif [[ $status -ne 0 ]]; then
          row "$events" "$keys" "$rule" "${engine_label[$engine]}" failed - - - -
          continue
        fi
        result="$(grep '^RESULT ' "$run_dir/stdout" || true)"
        if [[ "$result" == *unsupported=* ]]; then
          why="${result#*unsupported=}"
          row "$events" "$keys" "$rule" "${engine_label[$engine]}" "cannot express: ${why//\"/}" - - - -
          continue
        fi
        rate="$(sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' <<< "$result")"
        ratio=$(awk -v p="$rate" -v v="$vigil_rate" 'BEGIN {printf "%.3f", p / v}')
        same="yes"
        if ! python3 "$PEERS/same_matches.py" "$vigil_out" "$out" --keys "$run_dir/keys" > "$run_dir/diff"; then
          same="no"
          finding="$engine, $rule, $events events, $keys keys: $(head -n 1 "$run_dir/diff")"
          if [[ $shrink -eq 1 && -z "${shrunk[$engine/$rule]:-}" ]]; then
            shrunk[$engine/$rule]=1
            work="$run_dir/smallest-$engine-$rule"
            finding+=$'\n'"  smallest input: $(python3 "$PEERS/smallest_input.py" --events "$events_file" \
              --key "$(head -n 1 "$run_dir/keys")" --work "$work" \
              --vigil "$(vigil_command "$rule")" --peer "$(peer_command "$engine" "$rule")" \
              || echo "the search failed (see $work)")"
          fi
          finding+=$'\n'"$(tail -n +2 "$run_dir/diff")"
          findings+=("$finding")
        fi
        row "$events" "$keys" "$rule" "${engine_label[$engine]}" "$rate" "$ratio" "$peak_rss_mb" \
          "$(wc -l < "$out")" "$same"
      done
    done
  done
done

echo
echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), every engine pinned to CPU $cpu"
echo "vigil: whole process (reading and parsing NDJSON included); peers: first event in to last"
echo "match out, events already in memory; peers' RSS includes those events and the JVM heap"
echo "outputs: $run_dir"
if [[ ${#findings[@]} -gt 0 ]]; then
  echo
  echo "Findings (matches that differ from vigil's):"
  printf '%s\n' "${findings[@]}" | tee "$run_dir/findings.txt"
fi
