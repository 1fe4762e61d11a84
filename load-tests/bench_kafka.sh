#!/usr/bin/env bash
# bench_kafka.sh: `vigil serve` on a Kafka broker on this machine (scripts/kafka.sh).
#
#   (a) ceiling: kcat (librdkafka) consuming the whole input topic, nothing else;
#   (b) throughput: N generated events produced (keyed by card) to a fresh input topic
#       beforehand, then vigil (all five rules) started on it: events/s from its first record
#       read to the commit after its last, with exactly_once and with at_least_once;
#   (c) latency: vigil-kafka-load produces at a fixed rate into a running vigil (no allowed
#       out-of-orderness) and reads the alerts back read_committed; produce-to-alert p50 and
#       p99 after a warm-up, with one input partition and with P (records keyed by card, so
#       each partition gets a batch every linger.ms). With exactly_once an alert is visible at
#       the commit after it: up to one commit interval more. With several partitions an event
#       also waits until every partition has passed its time; (d) is the same load read
#       straight back, Kafka's own latency.
# The broker, vigil and the client share this machine's cores. Prints a Markdown table.
#
# Usage: load-tests/bench_kafka.sh [--build DIR] [--events N] [--keys K] [--workers W]
#            [--partitions P] [--rate R] [--duration S] [--warmup S] [--commit-interval D]
#            [--only throughput|latency|kafka] [--guarantee exactly_once|at_least_once]
set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/vigil-bench}"
build="build/release"
events=1000000
keys=100000
workers=2
partitions=3
rate=50000
duration=60
warmup=5
commit_interval=100ms
only=""
guarantees="exactly_once at_least_once"

die() { echo "bench_kafka: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    --keys) keys="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --commit-interval) commit_interval="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --guarantee) guarantees="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
source "$ROOT/load-tests/common.sh"
load="$(find_binary vigil-kafka-load "$build/load-tests/vigil-kafka-load")"
[[ -n "$load" ]] || die "no vigil-kafka-load under $build"
command -v kcat >/dev/null || die "kcat is needed (scripts/install-deps.sh)"

port="${VIGIL_KAFKA_PORT:-9092}"
broker="127.0.0.1:$port"
"$ROOT/scripts/kafka.sh" status >/dev/null 2>&1 || "$ROOT/scripts/kafka.sh" start >&2

generated() {  # EVENTS: the path of a generated stream of that many events (made once)
  local path="$BENCH_DIR/events-$1-$keys-42-$source_sum.ndjson"
  if [[ ! -s "$path" ]]; then
    "$generator" --events "$1" --keys "$keys" --seed 42 --fraud-rate 0.0002 > "$path.tmp.$$"
    mv "$path.tmp.$$" "$path"
  fi
  echo "$path"
}
file="$(generated "$events")"
keyed_file="${file%.ndjson}.keyed.tsv"
if [[ -z "$only" || "$only" == throughput ]] && [[ ! -s "$keyed_file" ]]; then  # card_id TAB event, for kcat -K
  sed -E 's/^(.*"card_id":"([^"]*)".*)$/\2\t\1/' "$file" > "$keyed_file.tmp.$$"
  mv "$keyed_file.tmp.$$" "$keyed_file"
fi
# The latency runs produce at a fixed rate for the warm-up and the duration.
latency_file="$(generated "$(awk -v r="$rate" -v s="$((warmup + duration))" 'BEGIN { printf "%d", r * s }')")"
work="$(mktemp -d)"
trap 'pkill -f -- "--data-dir $work" 2>/dev/null || true; rm -rf "$work"' EXIT

now_ms() { date +%s%3N; }

# Stops the vigil of PREFIX and lets the machine settle: the next run must not share the CPUs
# and the disk with this one's shutdown and with its data directory (an input log of hundreds
# of MB, dropped before its writeback rather than written out during the next run), which had
# made whichever guarantee ran second 10-20% slower. A vigil that has not exited after 30 s
# is killed.
stop_vigil() {
  pkill -f -- "--data-dir $work/$1" || true
  for _ in $(seq 1 300); do
    pgrep -f -- "--data-dir $work/$1" >/dev/null || break
    sleep 0.1
  done
  pkill -KILL -f -- "--data-dir $work/$1" || true
  rm -rf "${work:?}/${1:?}"
  sync
  sleep 2
}

serve() {  # PREFIX GUARANTEE OUT_OF_ORDERNESS [PARTITIONS]: starts vigil on the PREFIX topics; prints its port
  local prefix="$1" guarantee="$2" log="$work/$1.log" topic_partitions="${4:-$partitions}"
  "$vigil" serve --listen 127.0.0.1:0 --data-dir "$work/$prefix" --patterns-dir "$ROOT/patterns" \
    --workers "$workers" --max-out-of-orderness "$3" --kafka-brokers "$broker" \
    --kafka-input-topics "$prefix-events" --kafka-alerts-topic "$prefix-alerts" \
    --kafka-dead-letter-topic "$prefix-dead" --kafka-late-topic "$prefix-late" \
    --kafka-rules-topic "$prefix-rules" --kafka-group-id "$prefix" --kafka-topic-partitions "$topic_partitions" \
    --processing-guarantee "$guarantee" --kafka-commit-interval "$commit_interval" > "$log" 2>&1 &
  for _ in $(seq 1 300); do
    if grep -q "listening on" "$log" 2>/dev/null; then
      grep -o 'listening on http://[^ ]*' "$log" | sed 's/.*://'
      return 0
    fi
    sleep 0.1
  done
  cat "$log" >&2
  die "vigil did not start"
}

echo "| measurement | guarantee | events | seconds | events/s | alerts | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|"

wanted() { [[ -z "$only" || "$only" == "$1" ]]; }

# (b) needs its input in place first; (a) reads the same topic.
wanted throughput && for guarantee in $guarantees; do
  prefix="b$RANDOM$guarantee"
  "$ROOT/scripts/kafka.sh" topic "$prefix-events" "$partitions" >/dev/null
  # Keyed by card, as a real topic would be: every partition then spans the whole stream's
  # time, and at the end only the allowed out-of-orderness is left waiting for the watermark
  # (unkeyed, one partition could end minutes of event time before the others, and hold what
  # the others read after that until it is declared idle).
  kcat -P -b "$broker" -t "$prefix-events" -K $'\t' -X linger.ms=20 -X batch.num.messages=10000 < "$keyed_file"
  sync  # the writeback of what the broker just took is not the run's
  sleep 2
  if [[ "$guarantee" == exactly_once ]]; then
    start=$(now_ms)
    consumed=$(kcat -C -b "$broker" -t "$prefix-events" -o beginning -e -q | wc -l)
    seconds=$(awk -v ms=$(( $(now_ms) - start )) 'BEGIN { printf "%.2f", ms / 1000 }')
    echo "| consume only (kcat) | - | $consumed | $seconds | $(awk -v n="$consumed" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }') | - | - | - |"
  fi
  port_v=$(serve "$prefix" "$guarantee" 5s)
  read -r seconds alerts < <(python3 "$ROOT/load-tests/kafka_drain_time.py" "$port_v" "$events")
  echo "| throughput | $guarantee | $events | $seconds | $(awk -v n="$events" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }') | $alerts | - | - |"
  stop_vigil "$prefix"
done

wanted latency && for input_partitions in 1 "$partitions"; do
  for guarantee in $guarantees; do
    prefix="l$RANDOM$guarantee"
    # In order, as produced: an event is matched as soon as every partition has passed its time.
    port_v=$(serve "$prefix" "$guarantee" 0 "$input_partitions")
    sleep 2
    line=$("$load" --brokers "$broker" --topic "$prefix-events" --alerts-topic "$prefix-alerts" --events "$latency_file" \
             --rate "$rate" --duration "$duration" --warmup "$warmup" --key-field card_id --settle 5 --timeline "${BENCH_VERBOSE:-0}" 2>"$work/load-$prefix.err")
    if [[ -n "${BENCH_VERBOSE:-}" ]]; then
      cat "$work/load-$prefix.err" >&2
      curl -s "http://127.0.0.1:$port_v/metrics" | grep -E '^vigil_checkpoint_(last|total)|^vigil_checkpoints_total|^vigil_kafka_commit_duration|^vigil_server_ingest_to_alert|^vigil_kafka_input_waits' >&2
    fi
    read -r produced seconds per_second alerts p50 p99 < <(echo "$line" | awk '{print $2, $5, $7, $10, $14, $16}' | tr -d '(;')
    echo "| latency at $rate/s, $input_partitions partition(s) | $guarantee | $produced | $seconds | $per_second | $alerts | $p50 | $p99 |"
    stop_vigil "$prefix"
  done
done

# (d) Kafka alone: the same load read back from the input topic itself.
wanted kafka || exit 0
prefix="k$RANDOM"
"$ROOT/scripts/kafka.sh" topic "$prefix-events" "$partitions" >/dev/null
line=$("$load" --brokers "$broker" --topic "$prefix-events" --alerts-topic "$prefix-events" --events "$latency_file" \
         --rate "$rate" --duration "$duration" --warmup "$warmup" --key-field card_id --settle 3 2>/dev/null)
read -r produced seconds per_second alerts p50 p99 < <(echo "$line" | awk '{print $2, $5, $7, $10, $14, $16}' | tr -d '(;')
echo "| produce-to-consume at $rate/s (Kafka only) | - | $produced | $seconds | $per_second | - | $p50 | $p99 |"
