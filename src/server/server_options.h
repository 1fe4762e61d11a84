#pragma once
// ServerOptions: everything `vigil serve` can be configured with. Filled by app's config
// loader from the YAML file, VIGIL_* environment variables and flags (in rising precedence).

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vigil::server {

struct ServerOptions {
  // Address and port the HTTP API listens on. Default: 127.0.0.1:8080 (config key
  // server.listen, "HOST:PORT" or "[IPV6]:PORT"; port 0 picks a free port). An IPv6 address
  // is kept without its brackets.
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8080;
  // HTTPS: a PEM certificate chain and its private key; both empty: plain HTTP
  // (server.tls.cert_file, server.tls.key_file).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Largest request body accepted, in bytes; larger ones get 413. Default: 16 MiB
  // (server.max_body_bytes).
  size_t max_body_bytes = size_t{16} << 20;
  // Open connections at most; more get 503. Default: 1024 (server.max_connections).
  size_t max_connections = 1024;
  // Open connections from one client address at most; more get 429. Default: 64
  // (server.max_connections_per_client).
  size_t max_connections_per_client = 64;
  // Time to send one whole request; a slower client's connection is closed. Default: 30 s
  // (server.request_timeout).
  int64_t request_timeout_ms = 30000;
  // Largest pattern document accepted, in bytes. Default: 256 KiB (server.max_pattern_bytes).
  size_t max_pattern_bytes = size_t{256} << 10;
  // Where patterns and alerts are kept. Default: ./vigil-data (data_dir).
  std::string data_dir = "vigil-data";
  // Directory of pattern files loaded at start-up; empty: none (patterns_dir).
  std::string patterns_dir;
  // Alerts NDJSON file. Default: <data_dir>/alerts.ndjson (alerts.file); empty here, the
  // config loader fills it in once data_dir is known.
  std::string alerts_file;
  // Alerts kept in memory for GET /alerts. Default: 1000 (alerts.recent).
  size_t recent_alerts = 1000;
  // The alerts file is rotated (alerts.ndjson -> alerts.ndjson.1 -> ...) when it grows past
  // this many bytes. Default: 256 MiB (alerts.max_file_bytes).
  size_t alerts_max_file_bytes = size_t{256} << 20;
  // Rotated alerts files kept. Default: 5 (alerts.keep_files).
  size_t alerts_keep_files = 5;
  // Event time field: epoch milliseconds or RFC 3339. Default: ts (events.time_field).
  std::string time_field = "ts";
  // Allowed lateness before an event is late, in milliseconds of event time. Default: 0
  // (events.max_out_of_orderness).
  int64_t max_out_of_orderness_ms = 0;
  // With no event for this long (wall clock), the watermark advances with wall-clock time, so
  // windows close and timeouts fire on a quiet stream; 0 turns it off. Default: 10 s
  // (events.idle_timeout).
  int64_t idle_timeout_ms = 10000;
  // Bearer token of the admin role, which may do everything; with it set, every endpoint but
  // /healthz, /readyz and /metrics needs a token; empty: no authentication (api.token).
  // Never logged.
  std::string api_token;
  // Bearer token of the read-only role: GET endpoints and POST /validate; empty: none
  // (api.read_token). Needs api_token. Never logged.
  std::string api_read_token;
  // Pattern changes through the API, one NDJSON line each (api.audit_log). Empty here, the
  // config loader fills in <data_dir>/audit.ndjson.
  std::string audit_log_file;
  // Matching threads, each owning a shard of the keys; 0: one per CPU this process may run
  // on (workers).
  size_t workers = 0;
  // Partial matches kept per key and pattern. Default: 10000
  // (events.max_partial_matches_per_key).
  size_t max_partial_matches_per_key = 10000;
  // Partial matches kept per pattern over all keys; beyond it the oldest are dropped (the key
  // that went over first) and counted. 0: no limit. Default: 10,000,000
  // (events.max_partial_matches_per_pattern).
  size_t max_partial_matches_per_pattern = 10000000;
  // Events taken in but not yet matched, at most (rounded up to whole chunks of the engine);
  // beyond it ingest refuses (HTTP 503) or waits (Kafka). 0: 256 x (16 x workers + 32).
  // Default: 0 (events.max_in_flight).
  size_t max_events_in_flight = 0;
  // A pattern whose matching costs more than this many microseconds of CPU per event (over
  // two windows in a row of at least 1 s and 5000 events) is disabled, with the reason on the pattern. 0: no
  // budget. Default: 200 (events.max_pattern_cpu_us_per_event).
  size_t max_pattern_cpu_us_per_event = 200;
  // State TTL: partial matches of a pattern without `within` are dropped once they started
  // this long (event time) before the watermark; 0: kept until they complete. Default: 24 h
  // (state.max_age).
  int64_t max_state_age_ms = int64_t{24} * 3600 * 1000;
  // Memory the matching state may take (an estimate: events kept by partial matches, their
  // links, key records), in bytes; beyond it the least recently used keys wait on disk until
  // an event or a deadline needs them. 0: no limit. Default: 0 (state.memory_budget_bytes).
  size_t memory_budget_bytes = 0;
  // A checkpoint of the matching state is taken this often (and at every pattern change and
  // on shutdown). Default: 10 s (checkpoint.interval).
  int64_t checkpoint_interval_ms = 10000;
  // Checkpoints kept; restoring falls back to older ones. Default: 3 (checkpoint.retain).
  size_t checkpoints_retained = 3;
  // Sync the input log to disk before acknowledging events, or with Kafka before committing
  // their offsets (survives power loss, not only a crash of vigil). Default: off
  // (input_log.fsync).
  bool input_log_fsync = false;

  // Kafka (empty brokers: off, events come over HTTP only). See config/vigil.example.yaml.
  struct Kafka {
    std::string brokers;                  // kafka.brokers: bootstrap servers
    std::vector<std::string> input_topics = {"vigil-events"};  // kafka.input.topics
    std::string group_id = "vigil";       // kafka.group_id
    int64_t idle_partition_ms = 10000;    // kafka.input.idle_timeout
    bool record_time = false;             // kafka.input.time: record (true) or field
    std::string alerts_topic = "vigil-alerts";             // kafka.alerts_topic
    std::string dead_letter_topic = "vigil-dead-letters";  // kafka.dead_letter_topic
    std::string late_topic = "vigil-late-events";          // kafka.late_topic
    std::string rules_topic = "vigil-rules";               // kafka.rules_topic
    int topic_partitions = 3;             // kafka.topics.partitions
    int replication_factor = 1;           // kafka.topics.replication_factor
    bool exactly_once = true;             // processing.guarantee
    int64_t commit_interval_ms = 100;     // kafka.commit_interval
    std::string transactional_id;         // kafka.transactional_id; empty: vigil-<group_id>
    std::map<std::string, std::string> properties;  // kafka.properties: librdkafka's, as given
  } kafka;
};

}  // namespace vigil::server
