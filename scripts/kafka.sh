#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft mode: broker and controller in
# one process, no ZooKeeper) on loopback, for vigil's tests, load tests and CI.
# The broker's jars come from Maven Central through scripts/kafka/pom.xml and
# are cached in the local Maven repository (~/.m2), so only the first start
# downloads anything.
#
#   scripts/kafka.sh start               resolve jars, format storage once, start
#                                        the broker and wait until it answers
#   scripts/kafka.sh stop                stop the broker (SIGTERM, SIGKILL after 30 s)
#   scripts/kafka.sh status              exit 0 if the broker answers, else 1
#   scripts/kafka.sh topic NAME [PARTS]  create a topic (default 1 partition) if missing
#   scripts/kafka.sh reset               stop and delete the state directory
#
# Environment:
#   VIGIL_KAFKA_DIR   state directory: config, data, broker.log, pid file
#                     (default /tmp/vigil-kafka)
#   VIGIL_KAFKA_PORT  client (PLAINTEXT) port on 127.0.0.1 (default 9092); the
#                     KRaft controller listens on VIGIL_KAFKA_PORT+1
#
# Needs java 17+, mvn and kcat (scripts/install-deps.sh installs them).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
STATE_DIR="${VIGIL_KAFKA_DIR:-/tmp/vigil-kafka}"
PORT="${VIGIL_KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
BOOTSTRAP="127.0.0.1:$PORT"

CONFIG="$STATE_DIR/server.properties"
LOG4J_CONFIG="$STATE_DIR/log4j2.properties"
TOOLS_LOG4J_CONFIG="$STATE_DIR/tools-log4j2.properties"
DATA_DIR="$STATE_DIR/data"
BROKER_LOG="$STATE_DIR/broker.log"
PID_FILE="$STATE_DIR/kafka.pid"
CLASSPATH_FILE="$STATE_DIR/classpath.txt"
CLASSPATH_KEY_FILE="$STATE_DIR/classpath.key"

START_TIMEOUT=60
STOP_TIMEOUT=30
HEAP_OPTS="${VIGIL_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

die() { echo "kafka: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found (scripts/install-deps.sh installs it)"
}

# The classpath, resolved by Maven once per pom version and kept in the state
# directory; Maven is asked again if the pom changes or a jar went missing.
classpath() {
  local key cp jar ok=1
  key="$(cksum <"$POM")"
  if [[ -f "$CLASSPATH_FILE" && -f "$CLASSPATH_KEY_FILE" && "$(cat "$CLASSPATH_KEY_FILE")" == "$key" ]]; then
    cp="$(cat "$CLASSPATH_FILE")"
    local IFS=:
    for jar in $cp; do [[ -f "$jar" ]] || { ok=0; break; }; done
    if [[ $ok -eq 1 && -n "$cp" ]]; then
      printf '%s' "$cp"
      return
    fi
  fi
  need mvn
  mkdir -p "$STATE_DIR"
  echo "kafka: resolving broker jars with Maven (cached in ~/.m2)" >&2
  mvn -q -B -f "$POM" dependency:build-classpath -Dmdep.outputFile="$CLASSPATH_FILE" \
    >"$STATE_DIR/mvn.log" 2>&1 \
    || { cat "$STATE_DIR/mvn.log" >&2; die "mvn could not resolve the broker's jars"; }
  printf '%s' "$key" >"$CLASSPATH_KEY_FILE"
  cat "$CLASSPATH_FILE"
}

write_config() {
  cat >"$CONFIG" <<EOF
# Written by scripts/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF

  # Broker logging: INFO to stdout, which start() sends to broker.log.
  cat >"$LOG4J_CONFIG" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
EOF

  # Command-line tools: warnings only, to stderr.
  cat >"$TOOLS_LOG4J_CONFIG" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# Prints the broker's pid if the pid file names a live broker process.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the process must be this broker.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $CONFIG" || return 1
  echo "$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

answering() {
  port_open "$PORT" || return 1
  timeout 10 kcat -b "$BOOTSTRAP" -L -m 3 >/dev/null 2>&1
}

tail_log() {
  if [[ -f "$BROKER_LOG" ]]; then
    echo "kafka: last lines of $BROKER_LOG:" >&2
    tail -n 40 "$BROKER_LOG" >&2
  fi
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail_log
      die "broker exited during startup"
    fi
    if answering; then
      echo "kafka: ready on $BOOTSTRAP"
      return 0
    fi
    sleep 0.5
  done
  tail_log
  die "broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (pid $pid still running; 'scripts/kafka.sh stop' stops it)"
}

cmd_start() {
  need java
  need kcat
  local pid
  if pid="$(running_pid)"; then
    if answering; then
      echo "kafka: already running (pid $pid), ready on $BOOTSTRAP"
      return 0
    fi
    echo "kafka: pid $pid is running but not answering yet; waiting" >&2
    wait_ready "$pid"
    return
  fi
  rm -f "$PID_FILE"
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p on 127.0.0.1 is already in use (not by a broker of VIGIL_KAFKA_DIR=$STATE_DIR)"
    fi
  done

  mkdir -p "$STATE_DIR" "$DATA_DIR"
  local cp
  cp="$(classpath)"
  write_config

  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
      kafka.tools.StorageTool random-uuid)"
    echo "kafka: formatting storage in $DATA_DIR (cluster id $cluster_id)" >&2
    java -cp "$cp" -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
      kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONFIG" >"$STATE_DIR/format.log" 2>&1 \
      || { cat "$STATE_DIR/format.log" >&2; die "formatting storage failed"; }
  fi

  echo "=== scripts/kafka.sh start $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >>"$BROKER_LOG"
  # shellcheck disable=SC2086 # HEAP_OPTS holds several JVM options
  nohup java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
    -cp "$cp" kafka.Kafka "$CONFIG" >>"$BROKER_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "kafka: started broker (pid $pid), log in $BROKER_LOG" >&2
  wait_ready "$pid"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    echo "kafka: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka: broker (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  echo "kafka: stopped"
}

cmd_status() {
  need kcat
  local pid=""
  pid="$(running_pid)" || true
  if answering; then
    echo "kafka: ready on $BOOTSTRAP${pid:+ (pid $pid)}"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    echo "kafka: running (pid $pid) but not answering on $BOOTSTRAP"
  else
    echo "kafka: not running"
  fi
  return 1
}

cmd_topic() {
  local name="${1:-}" partitions="${2:-1}"
  [[ -n "$name" ]] || die "usage: $0 topic NAME [PARTITIONS]"
  [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive number"
  need java
  answering || die "broker not answering on $BOOTSTRAP ('$0 start' first)"
  local cp
  cp="$(classpath)"
  java -cp "$cp" -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1
}

cmd_reset() {
  cmd_stop
  rm -rf "$STATE_DIR"
  echo "kafka: removed $STATE_DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  topic) shift; cmd_topic "$@" ;;
  reset) cmd_reset ;;
  *)
    echo "usage: $0 {start|stop|status|topic NAME [PARTITIONS]|reset}" >&2
    exit 2
    ;;
esac
