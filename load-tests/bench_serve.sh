#!/usr/bin/env bash
# bench_serve.sh: HTTP ingest throughput and ingest-to-alert latency of `vigil serve`.
#
# Generates (once, cached under $BENCH_DIR, as bench_replay.sh does) an NDJSON stream with
# vigil-generate, then runs two measurements, each against a fresh server
#     taskset -c 0 vigil serve --listen 127.0.0.1:0 --data-dir TMP --patterns-dir patterns \
#                              --max-out-of-orderness 5s
# driven by
#     taskset -c 1 vigil-http-load --port PORT --events FILE --batch 1000 --connections 4 ...
#   (a) throughput: every event of the file, as fast as the server answers;
#   (b) latency: a fixed rate (default 50,000 events/s) for a fixed time (default 20 s).
# For each run, the latency of every alert is its detected_at minus the sent_at the client
# stamped on the last event of its match. Prints a Markdown table.
#
# Usage: load-tests/bench_serve.sh [--build DIR] [--events N] [--keys K] [--seed S]
#            [--fraud-rate R] [--zipf S] [--batch N] [--connections C] [--rate R]
#            [--duration S] [--max-out-of-orderness D] [--workers N] [--server-cpu LIST]
#            [--client-cpu LIST]
#            [--max-seconds S] [--no-throughput] [--no-latency] [--keep]
# See load-tests/README.md ("HTTP ingest").

set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/vigil-bench}"

build="build/release"
events=1000000
keys=100000
seed=42
fraud_rate=0.0002
zipf=""
batch=1000
connections=4
rate=50000
duration=20
out_of_orderness="5s"
server_cpu=0
workers=1
client_cpu=1
max_seconds=300
do_throughput=1
do_latency=1
keep=0

usage() {
  cat <<'EOF'
usage: load-tests/bench_serve.sh [options]
  --build DIR                 build directory holding vigil and vigil-http-load (default build/release)
  --events N                  events for the throughput run (default 1000000)
  --keys K                    distinct cards (default 100000)
  --seed S                    generator seed (default 42)
  --fraud-rate R              generator fraud rate (default 0.0002)
  --zipf S                    skew card keys with Zipf(S) (default: uniform)
  --batch N                   events per POST /events (default 1000)
  --connections C             client keep-alive connections (default 4)
  --rate R                    events/s of the latency run (default 50000)
  --duration S                seconds of the latency run (default 20)
  --max-out-of-orderness D    the server's allowed lateness (default 5s)
  --workers N                 the server's matching threads (default 1)
  --server-cpu LIST           CPUs for the server, as taskset takes them: 0 or 0,1 (default 0)
  --client-cpu LIST           CPUs for the client (default 1)
  --max-seconds S             cap on the throughput run (default 300)
  --no-throughput             skip the throughput run
  --no-latency                skip the latency run
  --keep                      keep the servers' data directories (alerts, logs)
environment:
  BENCH_DIR                   where generated events are cached (default /tmp/vigil-bench)
Relative paths are taken from the current directory if they exist there, else from the
repository root. The script builds nothing: build the vigil and vigil-http-load targets first.
EOF
}

die() {
  echo "bench_serve: $*" >&2
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
    --batch) batch="${2:?--batch needs a value}"; shift 2 ;;
    --connections) connections="${2:?--connections needs a value}"; shift 2 ;;
    --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
    --duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --max-out-of-orderness) out_of_orderness="${2:?--max-out-of-orderness needs a value}"; shift 2 ;;
    --workers) workers="${2:?--workers needs a value}"; shift 2 ;;
    --server-cpu) server_cpu="${2:?--server-cpu needs a value}"; shift 2 ;;
    --client-cpu) client_cpu="${2:?--client-cpu needs a value}"; shift 2 ;;
    --max-seconds) max_seconds="${2:?--max-seconds needs a value}"; shift 2 ;;
    --no-throughput) do_throughput=0; shift ;;
    --no-latency) do_latency=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

positive() {  # NAME VALUE
  [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "$1 must be a positive integer"
}
positive --events "$events"
positive --keys "$keys"
positive --batch "$batch"
positive --workers "$workers"
positive --connections "$connections"
positive --rate "$rate"
positive --duration "$duration"
positive --max-seconds "$max_seconds"
[[ $do_throughput -eq 1 || $do_latency -eq 1 ]] || die "nothing to do (--no-throughput and --no-latency)"
command -v python3 > /dev/null 2>&1 || die "python3 is needed to read the alerts"

# shellcheck source=load-tests/common.sh
source "$ROOT/load-tests/common.sh"
client="$(find_binary vigil-http-load "$build/load-tests/vigil-http-load")"
[[ -n "$client" ]] || die "no vigil-http-load under $build (build the vigil-http-load target)"
patterns_dir="$ROOT/patterns"

# events_file N: the cached stream of N events (generated if missing), named as
# bench_replay.sh names it.
events_file() {
  local n="$1" file
  file="$BENCH_DIR/events-n${n}-k${keys}-s${seed}-f${fraud_rate}${zipf:+-z$zipf}-g${source_sum}.ndjson"
  if [[ ! -s "$file" ]]; then
    echo "bench_serve: generating $n events over $keys keys into $file" >&2
    local gen_args=(--events "$n" --keys "$keys" --seed "$seed" --fraud-rate "$fraud_rate")
    [[ -n "$zipf" ]] && gen_args+=(--zipf "$zipf")
    "$generator" "${gen_args[@]}" > "$file.tmp.$$"
    mv "$file.tmp.$$" "$file"
  fi
  printf '%s\n' "$file"
}

# CPU pinning: the server on one CPU, the client on another.
pin_for() {  # CPU: prints the taskset prefix, or nothing when that CPU cannot be used
  if command -v taskset > /dev/null 2>&1 && taskset -c "$1" true 2> /dev/null; then
    printf 'taskset -c %s\n' "$1"
  fi
}
read -r -a server_pin <<< "$(pin_for "$server_cpu")"
read -r -a client_pin <<< "$(pin_for "$client_cpu")"
if [[ ${#server_pin[@]} -eq 0 || ${#client_pin[@]} -eq 0 ]]; then
  echo "bench_serve: taskset unavailable or CPU $server_cpu/$client_cpu not allowed; running unpinned" >&2
  server_pin=()
  client_pin=()
fi
pinning="unpinned"
[[ ${#server_pin[@]} -gt 0 ]] && pinning="server on CPU $server_cpu, client on CPU $client_cpu"

# vigil serve reads VIGIL_* variables (VIGIL_CONFIG, VIGIL_API_TOKEN, ...): the servers run
# without them, so only the flags below configure what is measured.
vigil_vars="$(compgen -e | grep '^VIGIL_' || true)"
if [[ -n "$vigil_vars" ]]; then
  echo "bench_serve: ignoring for the server: $(echo $vigil_vars)" >&2
  for v in $vigil_vars; do unset "$v"; done
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-serve.XXXXXX")"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2> /dev/null; then
    kill -KILL "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  if [[ $keep -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "bench_serve: kept $work" >&2
  fi
}
trap cleanup EXIT

clk_tck="$(getconf CLK_TCK 2> /dev/null || echo 100)"

# start_server DIR: starts vigil serve on a free port with DIR as its data directory; sets
# server_pid and server_port.
start_server() {
  local dir="$1" line="" i
  mkdir -p "$dir"
  ${server_pin[@]+"${server_pin[@]}"} "$vigil" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --workers "$workers" \
    --patterns-dir "$patterns_dir" --max-out-of-orderness "$out_of_orderness" \
    > "$dir/server.out" 2> "$dir/server.err" &
  server_pid=$!
  for ((i = 0; i < 200; i++)); do
    line="$(head -n 1 "$dir/server.out" 2> /dev/null || true)"
    [[ "$line" == "vigil: listening on http://"* ]] && break
    if ! kill -0 "$server_pid" 2> /dev/null; then
      echo "bench_serve: vigil serve exited at start-up; its stderr:" >&2
      tail -n 10 "$dir/server.err" >&2
      exit 1
    fi
    sleep 0.05
  done
  [[ "$line" =~ ^vigil:\ listening\ on\ http://127\.0\.0\.1:([0-9]+) ]] ||
    { echo "bench_serve: no 'listening' line from vigil serve within 10 s (got '$line')" >&2; exit 1; }
  server_port="${BASH_REMATCH[1]}"
  local loaded
  loaded="$(python3 -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1], timeout=10))["patterns"])' \
    "http://127.0.0.1:$server_port/readyz")" || { echo "bench_serve: GET /readyz failed" >&2; exit 1; }
  [[ "$loaded" -ge 1 ]] || { echo "bench_serve: the server loaded no patterns from $patterns_dir" >&2; exit 1; }
  server_patterns="$loaded"
  if [[ -s "$dir/server.err" ]]; then
    echo "bench_serve: vigil serve start-up messages:" >&2
    sed 's/^/  /' "$dir/server.err" >&2
  fi
}

# stop_server: records the server's CPU seconds and peak RSS, sends SIGTERM and checks that
# it exits 0 within 10 s. Sets server_cpu_s, server_rss_mb and server_status.
stop_server() {
  local stat i
  stat="$(cat "/proc/$server_pid/stat" 2> /dev/null || true)"
  # Fields 14 and 15 (utime, stime) counted after the ") " that ends the command name.
  server_cpu_s="$(awk -v t="$clk_tck" 'NF { sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' <<< "$stat")"
  server_rss_mb="$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status" 2> /dev/null || echo "-")"
  kill -TERM "$server_pid" 2> /dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$server_pid" 2> /dev/null || break
    sleep 0.05
  done
  if kill -0 "$server_pid" 2> /dev/null; then
    echo "bench_serve: vigil serve did not exit within 10 s of SIGTERM; killing it" >&2
    kill -KILL "$server_pid" 2> /dev/null || true
  fi
  server_status=0
  wait "$server_pid" || server_status=$?
  server_pid=""
}

client_value() {  # NAME FILE: a "name value" line of the client's summary
  awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "-" }' "$2"
}

# alert_latency ALERTS: "count p50 p99 max timeouts unstamped" in ms over the alerts file
# (and its rotated predecessors ALERTS.1, ALERTS.2, ..., if the server rotated it).
# An alert's latency is detected_at minus the sent_at of the last event of its match (the
# last event of its last non-empty stage). Timed-out partial matches are counted apart.
alert_latency() {
  python3 - "$1" <<'PY'
import glob, json, math, re, sys
latencies, timeouts, unstamped = [], 0, 0
path = sys.argv[1]
rotated = [p for p in glob.glob(glob.escape(path) + ".*") if re.fullmatch(r"\d+", p[len(path) + 1:])]
lines = []
for name in rotated + [path]:
    try:
        with open(name, encoding="utf-8") as f:
            lines.extend(f)
    except FileNotFoundError:
        pass
for line in lines:
    if not line.strip():
        continue
    alert = json.loads(line)
    if alert.get("timeout"):
        timeouts += 1
        continue
    stages = [events for events in alert["match"].values() if events]
    last = stages[-1][-1] if stages else {}
    if "sent_at" not in last:
        unstamped += 1
        continue
    latencies.append(alert["detected_at"] - last["sent_at"])
latencies.sort()
def rank(p):
    return latencies[max(0, math.ceil(p * len(latencies)) - 1)]
if latencies:
    print(len(latencies), rank(0.50), rank(0.99), latencies[-1], timeouts, unstamped)
else:
    print(0, "-", "-", "-", timeouts, unstamped)
PY
}

# Event-time density of a file: events per second of event time (from its first and last ts).
events_per_event_second() {
  python3 - "$1" <<'PY'
import json, subprocess, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    first = json.loads(f.readline())["ts"]
last = json.loads(subprocess.run(["tail", "-n", "1", path], capture_output=True, text=True).stdout)["ts"]
n = int(subprocess.run(["wc", "-l", path], capture_output=True, text=True).stdout.split()[0])
print(f"{(n - 1) / max(1, last - first) * 1000:.1f}")
PY
}

failures=0
rows=()

# run_one LABEL FILE TARGET_RATE CLIENT_ARGS...: one fresh server, one client run, one row.
run_one() {
  local label="$1" file="$2" target="$3" dir="$work/$4"
  shift 4
  echo "bench_serve: $label run: $(wc -l < "$file") events available in $file" >&2
  start_server "$dir"
  echo "bench_serve: vigil serve on port $server_port, $server_patterns patterns, pid $server_pid" >&2
  local client_status=0
  ${client_pin[@]+"${client_pin[@]}"} "$client" --port "$server_port" --events "$file" \
    --batch "$batch" --connections "$connections" "$@" > "$dir/client.out" 2> "$dir/client.err" ||
    client_status=$?
  sed 's/^/  /' "$dir/client.out" >&2
  [[ -s "$dir/client.err" ]] && sed 's/^/  client: /' "$dir/client.err" >&2
  local server_alive=1
  kill -0 "$server_pid" 2> /dev/null || server_alive=0
  stop_server
  local status="ok"
  if [[ $server_alive -eq 0 ]]; then
    status="server died (exit $server_status)"
  elif [[ $client_status -ne 0 ]]; then
    status="client failed (exit $client_status)"
  elif [[ $server_status -ne 0 ]]; then
    status="server exit $server_status after SIGTERM"
  fi
  if [[ "$status" != ok ]]; then
    echo "bench_serve: $label: $status; last lines of the server's stderr:" >&2
    tail -n 5 "$dir/server.err" >&2
    failures=$((failures + 1))
  fi
  local sent seconds eps batches non202 overloaded rejected late stopped
  sent="$(client_value events_sent "$dir/client.out")"
  seconds="$(client_value seconds "$dir/client.out")"
  eps="$(client_value events_per_s "$dir/client.out")"
  batches="$(client_value batches "$dir/client.out")"
  non202="$(client_value non_202 "$dir/client.out")"
  overloaded="$(client_value overloaded "$dir/client.out")"
  rejected="$(client_value rejected "$dir/client.out")"
  late="$(client_value rejected_late "$dir/client.out")"
  stopped="$(client_value stopped_by "$dir/client.out")"
  local count p50 p99 max timeouts unstamped
  read -r count p50 p99 max timeouts unstamped <<< "$(alert_latency "$dir/data/alerts.ndjson")"
  [[ "$timeouts" != 0 ]] && echo "bench_serve: $label: $timeouts timed-out partial matches left out of the latency" >&2
  [[ "$unstamped" != 0 ]] && echo "bench_serve: $label: $unstamped alerts without sent_at left out of the latency" >&2
  local cpu_pct
  cpu_pct="$(awk -v c="$server_cpu_s" -v s="$seconds" 'BEGIN { if (s > 0 && c != "") printf "%.0f", 100 * c / s; else print "-" }')"
  [[ -n "$server_rss_mb" ]] || server_rss_mb="-"
  if [[ "$target" != "-" && "$eps" != "-" ]] &&
    awk -v a="$eps" -v t="$target" 'BEGIN { exit !(a < 0.95 * t) }'; then
    echo "bench_serve: $label: the achieved rate $eps events/s is below the target $target: the server (or client) could not keep up, so latency includes queueing" >&2
  fi
  rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s (%s late) | %s | %s | %s | %s | %s | %s | %s |' \
    "$label" "$target" "$sent" "$seconds" "$eps" "$batches" "$overloaded" "$non202" "$rejected" "$late" \
    "$count" "$p50" "$p99" "$max" "$cpu_pct" "$server_rss_mb" "$status${stopped:+, $stopped}")")
}

echo "vigil:   $vigil"
echo "client:  $client"
if [[ -r /proc/cpuinfo ]]; then
  echo "cpu:     $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) ($pinning)"
fi
echo "server:  vigil serve --listen 127.0.0.1:0 --workers $workers --patterns-dir $patterns_dir --max-out-of-orderness $out_of_orderness"
echo "client:  batches of $batch events over $connections keep-alive connections"
# The allowed lateness in ms, for the hold-back estimate ("5s", "500ms", "2m", "1h", "1d"; a bare
# number is taken as ms; anything else as unknown).
ooo_ms="$(python3 -c 'import sys
t = sys.argv[1]
units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
for u in ("ms", "s", "m", "h", "d"):
    if t.endswith(u) and t[:-len(u)].isdigit():
        print(int(t[:-len(u)]) * units[u]); break
else:
    print(int(t) if t.isdigit() else -1)' "$out_of_orderness")"
if [[ "$ooo_ms" != 0 ]]; then
  echo "note:    the server runs with --max-out-of-orderness $out_of_orderness because batches posted over"
  echo "         $connections connections can reach it out of order; events that still arrive below the"
  echo "         watermark are rejected as late (counted below). The matcher holds every event until"
  echo "         the watermark passes it, so alert latency includes the wall time the stream takes to"
  echo "         advance $out_of_orderness of event time."
else
  echo "note:    the server runs with --max-out-of-orderness 0: no hold-back, but with more than one"
  echo "         connection, batches that arrive out of order are rejected as late (counted below)."
fi

if [[ $do_throughput -eq 1 ]]; then
  file="$(events_file "$events")"
  echo "events:  $file ($(wc -c < "$file") bytes)"
  run_one throughput "$file" "-" throughput --duration "$max_seconds"
fi
if [[ $do_latency -eq 1 ]]; then
  file="$(events_file "$((rate * duration))")"
  density="$(events_per_event_second "$file")"
  echo "events:  $file ($(wc -c < "$file") bytes, $density events per second of event time)"
  if [[ "$ooo_ms" -gt 0 ]]; then
    hold_ms="$(awk -v d="$density" -v o="$ooo_ms" -v r="$rate" 'BEGIN { printf "%.0f", d * o / r }')"
    echo "         at $rate events/s, $out_of_orderness of event time pass in about $hold_ms ms of wall time:"
    echo "         the expected least latency from the watermark hold-back alone"
  fi
  run_one "latency @ $rate/s" "$file" "$rate" latency --rate "$rate" --duration "$duration"
fi

echo
echo "| run | target events/s | events sent | seconds | events/s | batches | 503 resent | non-202 | rejected | alerts | latency p50 ms | p99 ms | max ms | server CPU % | server peak RSS MB | status |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "latency: per alert, detected_at (server wall clock) minus the sent_at the client stamped on"
echo "the last event of the match; both clocks are this machine's."
[[ $failures -eq 0 ]]
