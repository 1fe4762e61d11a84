#include "app/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "common/time_util.h"
#include "engine/sharded_matcher.h"

extern char** environ;

namespace vigil::app {
namespace {

using server::ServerOptions;

// An error message without its source prefix, or nullopt when the value was taken.
using ParseError = std::optional<std::string>;

constexpr size_t kMinBodyBytes = 1024;
constexpr size_t kMaxRecentAlerts = 1000000;

// Values are echoed back in messages; a pasted megabyte should not be.
std::string Got(std::string_view value) {
  constexpr size_t kMaxShown = 64;
  if (value.size() > kMaxShown) {
    return " (got '" + std::string(value.substr(0, kMaxShown)) + "...')";
  }
  return " (got '" + std::string(value) + "')";
}

enum class UnsignedParse { kOk, kNotANumber, kTooLarge };

// Digits only: no sign, no blanks, no hex, so "1e6" or " 10" are refused rather than guessed.
UnsignedParse ParseUnsigned(std::string_view text, uint64_t* out) {
  if (text.empty()) return UnsignedParse::kNotANumber;
  for (char c : text) {
    if (c < '0' || c > '9') return UnsignedParse::kNotANumber;
  }
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  if (ec == std::errc::result_out_of_range) return UnsignedParse::kTooLarge;
  return ec == std::errc() && ptr == text.data() + text.size() ? UnsignedParse::kOk
                                                               : UnsignedParse::kNotANumber;
}

// A count in [min, max]. Below 1 reads "must be a positive integer", as the user sees it.
ParseError ParseCount(const std::string& text, uint64_t min, uint64_t max, size_t* out) {
  uint64_t n = 0;
  switch (ParseUnsigned(text, &n)) {
    case UnsignedParse::kNotANumber:
      return "must be a positive integer" + Got(text);
    case UnsignedParse::kTooLarge:
      return "must be at most " + std::to_string(max) + Got(text);
    case UnsignedParse::kOk:
      break;
  }
  if (n < min) {
    if (min == 1) return "must be a positive integer" + Got(text);
    return "must be at least " + std::to_string(min) + Got(text);
  }
  if (n > max) return "must be at most " + std::to_string(max) + Got(text);
  *out = static_cast<size_t>(n);
  return std::nullopt;
}

// HOST:PORT, with an IPv6 host in brackets ("[::1]:8080"); the host is stored without them.
ParseError ParseListen(const std::string& text, std::string* host, uint16_t* port) {
  std::string_view h;
  std::string_view p;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return "must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080" + Got(text);
    }
    h = std::string_view(text).substr(1, close - 1);
    p = std::string_view(text).substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return "must be HOST:PORT, e.g. 127.0.0.1:8080" + Got(text);
    }
    h = std::string_view(text).substr(0, colon);
    p = std::string_view(text).substr(colon + 1);
    if (h.find(':') != std::string_view::npos) {
      return "an IPv6 host must be in brackets, e.g. [::1]:8080" + Got(text);
    }
  }
  if (h.empty()) {
    return "host must not be empty (0.0.0.0 listens on every interface)" + Got(text);
  }
  uint64_t n = 0;
  if (ParseUnsigned(p, &n) != UnsignedParse::kOk || n > 65535) {
    return "port must be 0..65535" + Got(text);
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(n);
  return std::nullopt;
}

ParseError ParseDuration(const std::string& text, int64_t* out) {
  const std::optional<int64_t> ms = ParseDurationMs(text);
  if (!ms) {
    return "must be a duration such as 500ms, 5s, 2m, 1h, 1d or bare milliseconds" + Got(text);
  }
  *out = *ms;
  return std::nullopt;
}

ParseError ParseBool(const std::string& text, bool* out) {
  if (text == "true" || text == "1" || text == "yes") {
    *out = true;
  } else if (text == "false" || text == "0" || text == "no") {
    *out = false;
  } else {
    return "must be true or false";
  }
  return std::nullopt;
}

ParseError ParseNonEmpty(const std::string& text, std::string* out) {
  if (text.empty()) return std::string("must not be empty");
  *out = text;
  return std::nullopt;
}

// One setting under its three names. `apply` parses and range-checks a single value; checks
// across settings run after precedence is applied (CheckAcrossSettings).
struct Setting {
  std::string_view key;   // YAML path, sections joined with '.'
  std::string_view env;   // environment variable
  std::string_view flag;  // command-line flag
  std::string_view value_name;   // in the usage text
  std::string_view help;         // in the usage text
  std::string_view default_text;  // in the usage text
  ParseError (*apply)(const std::string& value, ServerOptions* options);
};

// Order: as in config/vigil.example.yaml and the usage text.
const Setting kSettings[] = {
    {"server.listen", "VIGIL_SERVER_LISTEN", "--listen", "HOST:PORT",
     "address of the HTTP API; port 0 picks a free port", "127.0.0.1:8080",
     [](const std::string& v, ServerOptions* o) {
       return ParseListen(v, &o->listen_address, &o->port);
     }},
    {"server.max_connections", "VIGIL_SERVER_MAX_CONNECTIONS", "--max-connections", "N",
     "open connections at most, 1..100000; more get 503", "1024",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, 100000, &o->max_connections);
     }},
    {"server.max_connections_per_client", "VIGIL_SERVER_MAX_CONNECTIONS_PER_CLIENT",
     "--max-connections-per-client", "N",
     "open connections from one client address at most, 1..100000; more get 429", "64",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, 100000, &o->max_connections_per_client);
     }},
    {"server.request_timeout", "VIGIL_SERVER_REQUEST_TIMEOUT", "--request-timeout", "DURATION",
     "time a client has to send one whole request, 100ms..1h; then the connection closes", "30s",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (ParseError e = ParseDuration(v, &o->request_timeout_ms)) return e;
       if (o->request_timeout_ms < 100 || o->request_timeout_ms > 3600000) {
         return "must be from 100ms to 1h";
       }
       return std::nullopt;
     }},
    {"server.tls.cert_file", "VIGIL_SERVER_TLS_CERT_FILE", "--tls-cert", "FILE",
     "PEM certificate chain: the API is served over HTTPS; needs server.tls.key_file", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->tls_cert_file = v;
       return std::nullopt;
     }},
    {"server.tls.key_file", "VIGIL_SERVER_TLS_KEY_FILE", "--tls-key", "FILE",
     "PEM private key of server.tls.cert_file", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->tls_key_file = v;
       return std::nullopt;
     }},
    {"server.max_body_bytes", "VIGIL_SERVER_MAX_BODY_BYTES", "--max-body-bytes", "N",
     "largest request body in bytes, at least 1024; larger ones get 413", "16777216",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, kMinBodyBytes, SIZE_MAX, &o->max_body_bytes);
     }},
    {"server.max_pattern_bytes", "VIGIL_SERVER_MAX_PATTERN_BYTES", "--max-pattern-bytes", "N",
     "largest pattern document in bytes, 1024..max-body-bytes", "262144",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, kMinBodyBytes, SIZE_MAX, &o->max_pattern_bytes);
     }},
    {"workers", "VIGIL_WORKERS", "--workers", "N",
     "matching threads, each owning a shard of the keys, 0..256; 0: one per CPU", "0",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 0, engine::kMaxWorkers, &o->workers);
     }},
    {"data_dir", "VIGIL_DATA_DIR", "--data-dir", "DIR", "where patterns and alerts are kept",
     "vigil-data",
     [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->data_dir); }},
    {"patterns_dir", "VIGIL_PATTERNS_DIR", "--patterns-dir", "DIR",
     "pattern files loaded at start-up; empty: none", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->patterns_dir = v;
       return std::nullopt;
     }},
    {"alerts.file", "VIGIL_ALERTS_FILE", "--alerts-file", "FILE",
     "alerts appended as NDJSON; empty: DIR/alerts.ndjson of --data-dir",
     "vigil-data/alerts.ndjson",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->alerts_file = v;
       return std::nullopt;
     }},
    {"alerts.recent", "VIGIL_ALERTS_RECENT", "--recent-alerts", "N",
     "alerts kept in memory for GET /alerts, 1..1000000", "1000",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, kMaxRecentAlerts, &o->recent_alerts);
     }},
    {"alerts.max_file_bytes", "VIGIL_ALERTS_MAX_FILE_BYTES", "--alerts-max-file-bytes", "N",
     "rotate the alerts file past this size in bytes, at least 1024", "268435456",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, kMinBodyBytes, SIZE_MAX, &o->alerts_max_file_bytes);
     }},
    {"alerts.keep_files", "VIGIL_ALERTS_KEEP_FILES", "--alerts-keep-files", "N",
     "rotated alerts files kept, 1..100", "5",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, 100, &o->alerts_keep_files);
     }},
    {"events.time_field", "VIGIL_EVENTS_TIME_FIELD", "--time-field", "NAME",
     "event time field: epoch milliseconds or RFC 3339", "ts",
     [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->time_field); }},
    {"events.max_out_of_orderness", "VIGIL_EVENTS_MAX_OUT_OF_ORDERNESS", "--max-out-of-orderness",
     "DURATION", "how late an event may arrive and still be matched, e.g. 500ms, 5s, 2m", "0",
     [](const std::string& v, ServerOptions* o) {
       return ParseDuration(v, &o->max_out_of_orderness_ms);
     }},
    {"events.idle_timeout", "VIGIL_EVENTS_IDLE_TIMEOUT", "--idle-timeout", "DURATION",
     "with no event for this long, the watermark follows the wall clock; 0: never", "10s",
     [](const std::string& v, ServerOptions* o) { return ParseDuration(v, &o->idle_timeout_ms); }},
    {"events.max_partial_matches_per_key", "VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_KEY",
     "--max-partial-matches", "N", "partial matches kept per key and pattern", "10000",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, SIZE_MAX, &o->max_partial_matches_per_key);
     }},
    {"state.max_age", "VIGIL_STATE_MAX_AGE", "--max-state-age", "DURATION",
     "partial matches of a pattern without `within` are dropped this long after they started; 0: never",
     "24h",
     [](const std::string& v, ServerOptions* o) { return ParseDuration(v, &o->max_state_age_ms); }},
    {"state.memory_budget_bytes", "VIGIL_STATE_MEMORY_BUDGET_BYTES", "--memory-budget-bytes", "N",
     "memory the matching state may take; beyond it idle keys wait on disk; 0: no limit", "0",
     [](const std::string& v, ServerOptions* o) { return ParseCount(v, 0, SIZE_MAX, &o->memory_budget_bytes); }},
    {"checkpoint.interval", "VIGIL_CHECKPOINT_INTERVAL", "--checkpoint-interval", "DURATION",
     "how often the matching state is checkpointed, at least 100ms", "10s",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (ParseError e = ParseDuration(v, &o->checkpoint_interval_ms)) return e;
       if (o->checkpoint_interval_ms < 100) return "must be at least 100ms";
       return std::nullopt;
     }},
    {"checkpoint.retain", "VIGIL_CHECKPOINT_RETAIN", "--checkpoints-retained", "N",
     "checkpoints kept, 1..100; restoring falls back to older ones", "3",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 1, 100, &o->checkpoints_retained);
     }},
    {"input_log.fsync", "VIGIL_INPUT_LOG_FSYNC", "--input-log-fsync", "BOOL",
     "sync accepted events to disk before acknowledging them (Kafka: before committing their offsets); power-loss safety", "false",
     [](const std::string& v, ServerOptions* o) { return ParseBool(v, &o->input_log_fsync); }},
    {"events.max_partial_matches_per_pattern", "VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_PATTERN",
     "--max-partial-matches-per-pattern", "N", "partial matches kept per pattern over all keys; 0: no limit",
     "10000000",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 0, SIZE_MAX, &o->max_partial_matches_per_pattern);
     }},
    {"events.max_pattern_cpu_us_per_event", "VIGIL_EVENTS_MAX_PATTERN_CPU_US_PER_EVENT", "--max-pattern-cpu-us",
     "N", "a pattern costing more CPU per event (microseconds, two windows of 1 s and 5000 events in a row) is disabled; 0: no budget", "200",
     [](const std::string& v, ServerOptions* o) {
       return ParseCount(v, 0, 10000000, &o->max_pattern_cpu_us_per_event);
     }},
    {"events.max_in_flight", "VIGIL_EVENTS_MAX_IN_FLIGHT", "--max-events-in-flight", "N",
     "events taken in but not yet matched, at least 512; 0: 256 x (16 x workers + 32)", "0",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (ParseError e = ParseCount(v, 0, SIZE_MAX, &o->max_events_in_flight)) return e;
       if (o->max_events_in_flight != 0 && o->max_events_in_flight < 512) return "must be 0 or at least 512";
       return std::nullopt;
     }},
    {"processing.guarantee", "VIGIL_PROCESSING_GUARANTEE", "--processing-guarantee", "MODE",
     "with Kafka: exactly_once (transactions) or at_least_once", "exactly_once",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (v != "exactly_once" && v != "at_least_once") return "must be exactly_once or at_least_once";
       o->kafka.exactly_once = v == "exactly_once";
       return std::nullopt;
     }},
    {"kafka.brokers", "VIGIL_KAFKA_BROKERS", "--kafka-brokers", "HOST:PORT,...",
     "Kafka bootstrap servers; empty: no Kafka, events over HTTP", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->kafka.brokers = v;
       return std::nullopt;
     }},
    {"kafka.input.topics", "VIGIL_KAFKA_INPUT_TOPICS", "--kafka-input-topics", "TOPIC,...",
     "topics events are read from", "vigil-events",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->kafka.input_topics.clear();
       size_t pos = 0;
       while (pos <= v.size()) {
         const size_t comma = std::min(v.find(',', pos), v.size());
         if (comma > pos) o->kafka.input_topics.push_back(v.substr(pos, comma - pos));
         pos = comma + 1;
       }
       if (o->kafka.input_topics.empty()) return "needs at least one topic";
       return std::nullopt;
     }},
    {"kafka.input.idle_timeout", "VIGIL_KAFKA_INPUT_IDLE_TIMEOUT", "--kafka-idle-timeout", "DURATION",
     "a partition with no record for this long stops holding the watermark back", "10s",
     [](const std::string& v, ServerOptions* o) { return ParseDuration(v, &o->kafka.idle_partition_ms); }},
    {"kafka.input.time", "VIGIL_KAFKA_INPUT_TIME", "--kafka-input-time", "SOURCE",
     "event time from the events' time field (field) or the Kafka record timestamp (record)", "field",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (v != "field" && v != "record") return "must be field or record";
       o->kafka.record_time = v == "record";
       return std::nullopt;
     }},
    {"kafka.group_id", "VIGIL_KAFKA_GROUP_ID", "--kafka-group-id", "NAME", "consumer group of the input",
     "vigil", [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->kafka.group_id); }},
    {"kafka.alerts_topic", "VIGIL_KAFKA_ALERTS_TOPIC", "--kafka-alerts-topic", "TOPIC", "where alerts go",
     "vigil-alerts", [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->kafka.alerts_topic); }},
    {"kafka.dead_letter_topic", "VIGIL_KAFKA_DEAD_LETTER_TOPIC", "--kafka-dead-letter-topic", "TOPIC",
     "where malformed events go, with their reason", "vigil-dead-letters",
     [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->kafka.dead_letter_topic); }},
    {"kafka.late_topic", "VIGIL_KAFKA_LATE_TOPIC", "--kafka-late-topic", "TOPIC", "where late events go",
     "vigil-late-events",
     [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->kafka.late_topic); }},
    {"kafka.rules_topic", "VIGIL_KAFKA_RULES_TOPIC", "--kafka-rules-topic", "TOPIC",
     "compacted topic holding the patterns, read by every instance", "vigil-rules",
     [](const std::string& v, ServerOptions* o) { return ParseNonEmpty(v, &o->kafka.rules_topic); }},
    {"kafka.topics.partitions", "VIGIL_KAFKA_TOPICS_PARTITIONS", "--kafka-topic-partitions", "N",
     "partitions of the topics vigil creates, 1..10000", "3",
     [](const std::string& v, ServerOptions* o) {
       size_t n = 0;
       ParseError e = ParseCount(v, 1, 10000, &n);
       o->kafka.topic_partitions = static_cast<int>(n);
       return e;
     }},
    {"kafka.topics.replication_factor", "VIGIL_KAFKA_TOPICS_REPLICATION_FACTOR", "--kafka-replication-factor",
     "N", "replication of the topics vigil creates, 1..100", "1",
     [](const std::string& v, ServerOptions* o) {
       size_t n = 0;
       ParseError e = ParseCount(v, 1, 100, &n);
       o->kafka.replication_factor = static_cast<int>(n);
       return e;
     }},
    {"kafka.commit_interval", "VIGIL_KAFKA_COMMIT_INTERVAL", "--kafka-commit-interval", "DURATION",
     "how often alerts and input offsets are committed (one transaction), at least 10ms", "100ms",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       if (ParseError e = ParseDuration(v, &o->kafka.commit_interval_ms)) return e;
       if (o->kafka.commit_interval_ms < 10) return "must be at least 10ms";
       return std::nullopt;
     }},
    {"kafka.transactional_id", "VIGIL_KAFKA_TRANSACTIONAL_ID", "--kafka-transactional-id", "ID",
     "transactional id of this instance (unique per instance); empty: vigil-<group_id>", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->kafka.transactional_id = v;
       return std::nullopt;
     }},
    {"api.token", "VIGIL_API_TOKEN", "--api-token", "TOKEN",
     "admin bearer token; set, every endpoint but /healthz, /readyz, /metrics needs a token", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->api_token = v;
       return std::nullopt;
     }},
    {"api.read_token", "VIGIL_API_READ_TOKEN", "--api-read-token", "TOKEN",
     "read-only bearer token: GET endpoints and POST /validate; needs api.token", "none",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->api_read_token = v;
       return std::nullopt;
     }},
    {"api.audit_log", "VIGIL_API_AUDIT_LOG", "--audit-log", "FILE",
     "pattern changes through the API as NDJSON; empty: DIR/audit.ndjson of --data-dir",
     "vigil-data/audit.ndjson",
     [](const std::string& v, ServerOptions* o) -> ParseError {
       o->audit_log_file = v;
       return std::nullopt;
     }},
};
constexpr size_t kSettingCount = std::size(kSettings);

constexpr std::string_view kKafkaProperties = "kafka.properties";
constexpr std::string_view kConfigFlag = "--config";
constexpr std::string_view kConfigEnv = "VIGIL_CONFIG";

std::optional<size_t> FindByKey(std::string_view key) {
  for (size_t i = 0; i < kSettingCount; ++i) {
    if (kSettings[i].key == key) return i;
  }
  return std::nullopt;
}

std::optional<size_t> FindByFlag(std::string_view flag) {
  for (size_t i = 0; i < kSettingCount; ++i) {
    if (kSettings[i].flag == flag) return i;
  }
  return std::nullopt;
}

// The names directly under `prefix` ("" is the top level), in table order.
std::vector<std::string> ChildKeys(std::string_view prefix) {
  std::vector<std::string> names;
  for (const Setting& s : kSettings) {
    std::string_view rest = s.key;
    if (!prefix.empty()) {
      if (rest.size() <= prefix.size() || !rest.starts_with(prefix) || rest[prefix.size()] != '.') {
        continue;
      }
      rest.remove_prefix(prefix.size() + 1);
    }
    std::string name(rest.substr(0, rest.find('.')));
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  return names;
}

bool IsSection(std::string_view key) {
  for (const Setting& s : kSettings) {
    if (s.key.size() > key.size() && s.key.starts_with(key) && s.key[key.size()] == '.') {
      return true;
    }
  }
  return false;
}

// Where a value came from. Ranks follow precedence, so a later source has a larger kind.
enum class SourceKind { kDefault, kFile, kEnv, kFlag };

struct Origin {
  SourceKind kind = SourceKind::kDefault;
  // The error prefix: "cfg.yaml:3:11: server.listen", "VIGIL_ALERTS_RECENT", "--listen".
  std::string label;
};

std::string DescribeOrigin(const Origin& origin) {
  switch (origin.kind) {
    case SourceKind::kDefault:
      return "the default";
    case SourceKind::kFile:
      return "set at " + origin.label;
    case SourceKind::kEnv:
    case SourceKind::kFlag:
      return "set by " + origin.label;
  }
  return origin.label;
}

// "path:line:column", or just "path" when yaml-cpp has no position.
std::string FilePosition(const std::string& path, const YAML::Mark& mark) {
  if (mark.line < 0) return path;
  return path + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// Merges the sources into ServerOptions. Validation errors are collected, so one run reports
// every bad value; missing or unparsable files stop at once (there is nothing to validate).
class Loader {
 public:
  // Reads and applies the config file. Returns a non-OK Status only when the file cannot be
  // read or is not YAML; bad keys and values go to errors_.
  Status ApplyFile(const std::string& path) {
    std::string text;
    Status read = ReadConfigFile(path, &text);
    if (!read.ok()) return read;
    // yaml-cpp reports problems by throwing; this is the edge where they become values.
    try {
      const std::vector<YAML::Node> documents = YAML::LoadAll(text);
      if (documents.empty() || documents[0].IsNull()) return Status::Ok();  // defaults only
      if (documents.size() > 1) {
        return Status::InvalidArgument(FilePosition(path, documents[1].Mark()) +
                                       ": a config file holds one YAML document");
      }
      if (!documents[0].IsMap()) {
        return Status::InvalidArgument(FilePosition(path, documents[0].Mark()) +
                                       ": the config must be a mapping of keys, such as 'server:'");
      }
      ApplyMap(path, documents[0], "");
    } catch (const YAML::Exception& e) {
      return Status::InvalidArgument(FilePosition(path, e.mark) + ": " + e.msg);
    }
    return Status::Ok();
  }

  void Apply(size_t index, const std::string& value, Origin origin) {
    if (ParseError error = kSettings[index].apply(value, &options_)) {
      errors_.push_back(origin.label + ": " + *error);
    } else {
      origins_[index] = std::move(origin);
    }
  }

  void AddError(std::string error) { errors_.push_back(std::move(error)); }

  // Checks that involve two settings, on their final values. The setting from the higher
  // precedence source is blamed: that is the one the user most recently decided on.
  void CheckAcrossSettings() {
    if (options_.max_pattern_bytes > options_.max_body_bytes) {
      const Origin& body = origins_[*FindByKey("server.max_body_bytes")];
      const Origin& pattern = origins_[*FindByKey("server.max_pattern_bytes")];
      if (pattern.kind >= body.kind) {
        errors_.push_back(pattern.label + ": must be at most server.max_body_bytes (" +
                          std::to_string(options_.max_body_bytes) + ", " + DescribeOrigin(body) +
                          ")" + Got(std::to_string(options_.max_pattern_bytes)));
      } else {
        errors_.push_back(body.label + ": must be at least server.max_pattern_bytes (" +
                          std::to_string(options_.max_pattern_bytes) + ", " +
                          DescribeOrigin(pattern) + ")" +
                          Got(std::to_string(options_.max_body_bytes)));
      }
    }
  }

  Result<ServerOptions> Finish() && {
    if (!errors_.empty()) {
      std::string message;
      for (const std::string& e : errors_) {
        if (!message.empty()) message += '\n';
        message += e;
      }
      return Status::InvalidArgument(std::move(message));
    }
    if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
      return Status::InvalidArgument("server.tls.cert_file and server.tls.key_file go together");
    }
    if (!options_.api_read_token.empty() && options_.api_token.empty()) {
      return Status::InvalidArgument("api.read_token needs api.token: without an admin token "
                                     "the API has no authentication");
    }
    if (!options_.api_read_token.empty() && options_.api_read_token == options_.api_token) {
      return Status::InvalidArgument("api.read_token must differ from api.token");
    }
    if (options_.alerts_file.empty()) {
      options_.alerts_file = (std::filesystem::path(options_.data_dir) / "alerts.ndjson").string();
    }
    if (options_.audit_log_file.empty()) {
      options_.audit_log_file = (std::filesystem::path(options_.data_dir) / "audit.ndjson").string();
    }
    return std::move(options_);
  }

 private:
  static Status ReadConfigFile(const std::string& path, std::string* text) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      const int error = errno;
      std::string message = path + ": cannot open config file: " + std::strerror(error);
      return error == ENOENT ? Status::NotFound(std::move(message))
                             : Status::IoError(std::move(message));
    }
    char buffer[8192];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text->append(buffer, n);
    const bool failed = std::ferror(f) != 0;
    const int error = errno;
    std::fclose(f);
    if (failed) {
      return Status::IoError(path + ": cannot read config file: " + std::strerror(error));
    }
    return Status::Ok();
  }

  // Applies the keys of `map`, whose own key path is `prefix` ("" for the top level).
  void ApplyMap(const std::string& path, const YAML::Node& map, const std::string& prefix) {
    std::set<std::string> seen;
    // Nodes are copied out of the iterator's value: it is a temporary of the loop.
    for (const auto& kv : map) {
      const YAML::Node key = kv.first;
      const YAML::Node value = kv.second;
      const std::string where = FilePosition(path, key.Mark());
      if (!key.IsScalar()) {
        errors_.push_back(where + ": " + (prefix.empty() ? "" : prefix + ": ") +
                          "keys must be plain names");
        continue;
      }
      const std::string name = key.Scalar();
      const std::string full = prefix.empty() ? name : prefix + "." + name;
      if (!seen.insert(name).second) {
        errors_.push_back(where + ": " + full + ": duplicate key");
        continue;
      }
      if (full == kKafkaProperties) {
        ApplyKafkaProperties(path, key, value);
      } else if (const std::optional<size_t> index = FindByKey(full)) {
        ApplyValue(path, *index, key, value);
      } else if (IsSection(full)) {
        if (value.IsNull()) continue;  // "events:" with nothing under it
        if (!value.IsMap()) {
          errors_.push_back(FilePosition(path, MarkOf(value, key)) + ": " + full +
                            ": must be a mapping of keys");
          continue;
        }
        ApplyMap(path, value, full);
      } else {
        std::string known;
        for (const std::string& child : ChildKeys(prefix)) {
          known += known.empty() ? child : ", " + child;
        }
        errors_.push_back(where + ": " + full + ": unknown key (known keys" +
                          (prefix.empty() ? "" : " under " + prefix) + ": " + known + ")");
      }
    }
  }

  // kafka.properties: librdkafka's properties, passed through. A value "${NAME}" is taken
  // from the environment variable NAME, so secrets need not be in the file.
  void ApplyKafkaProperties(const std::string& path, const YAML::Node& key, const YAML::Node& value) {
    if (value.IsNull()) return;
    if (!value.IsMap()) {
      errors_.push_back(FilePosition(path, MarkOf(value, key)) + ": " + std::string(kKafkaProperties) +
                        ": must be a mapping of librdkafka properties");
      return;
    }
    for (const auto& kv : value) {
      const YAML::Node name = kv.first;
      const YAML::Node text = kv.second;
      if (!name.IsScalar() || !text.IsScalar()) {
        errors_.push_back(FilePosition(path, name.Mark()) + ": " + std::string(kKafkaProperties) +
                          ": each property is a name and a plain value");
        continue;
      }
      std::string v = text.Scalar();
      if (v.size() > 3 && v.starts_with("${") && v.ends_with("}")) {
        const std::string variable = v.substr(2, v.size() - 3);
        const char* from_env = std::getenv(variable.c_str());
        if (!from_env) {
          errors_.push_back(FilePosition(path, text.Mark()) + ": " + std::string(kKafkaProperties) + "." +
                            name.Scalar() + ": environment variable " + variable + " is not set");
          continue;
        }
        v = from_env;
      }
      options_.kafka.properties[name.Scalar()] = std::move(v);
    }
  }

  void ApplyValue(const std::string& path, size_t index, const YAML::Node& key,
                  const YAML::Node& value) {
    const std::string full(kSettings[index].key);
    const std::string label = FilePosition(path, MarkOf(value, key)) + ": " + full;
    if (value.IsNull()) {
      errors_.push_back(label + ": needs a value (remove the key to use the default)");
    } else if (!value.IsScalar()) {
      errors_.push_back(label + ": must be a single value, not a " +
                        (value.IsMap() ? "mapping" : "list"));
    } else {
      Apply(index, value.Scalar(), Origin{SourceKind::kFile, label});
    }
  }

  // The value's position, or its key's when the value is null: an empty value's position
  // is wherever yaml-cpp found the next token, often the following line.
  static YAML::Mark MarkOf(const YAML::Node& value, const YAML::Node& key) {
    const YAML::Mark mark = value.Mark();
    return value.IsNull() || mark.line < 0 ? key.Mark() : mark;
  }

  ServerOptions options_;
  Origin origins_[kSettingCount];
  std::vector<std::string> errors_;
};

// One command-line argument, parsed: a setting's value, the config path, or an error.
struct FlagItem {
  std::optional<size_t> index;  // nullopt: --config (when error is empty)
  std::string value;
  std::string flag;
  std::string error;
};

// Splits `args` into flag values. After an unknown flag, a following argument that is not a
// flag is taken as its value, so one mistake is reported once.
std::vector<FlagItem> ParseFlags(const std::vector<std::string>& args) {
  std::vector<FlagItem> items;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    FlagItem item;
    if (!arg.starts_with("--")) {
      item.error = "'" + arg + "': unexpected argument (settings are given as --flag VALUE)";
      items.push_back(std::move(item));
      continue;
    }
    const size_t equals = arg.find('=');
    item.flag = arg.substr(0, equals);
    const bool known = item.flag == kConfigFlag || FindByFlag(item.flag).has_value();
    if (equals != std::string::npos) {
      item.value = arg.substr(equals + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      item.value = args[++i];
    } else if (known) {
      item.error = item.flag + ": needs a value";
    }
    if (!known) {
      item.error = item.flag + ": unknown flag (see 'vigil serve --help')";
    } else if (item.error.empty() && item.flag != kConfigFlag) {
      item.index = FindByFlag(item.flag);
    }
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

Result<ServerOptions> LoadServerOptions(const std::string& default_config_path,
                                        const std::map<std::string, std::string>& env,
                                        const std::vector<std::string>& args) {
  const std::vector<FlagItem> flags = ParseFlags(args);

  std::string config_path = default_config_path;
  if (auto it = env.find(std::string(kConfigEnv)); it != env.end()) config_path = it->second;
  for (const FlagItem& item : flags) {
    if (item.error.empty() && !item.index) config_path = item.value;  // the last one wins
  }

  Loader loader;
  if (!config_path.empty()) {
    Status file = loader.ApplyFile(config_path);
    if (!file.ok()) return file;
  }
  for (size_t i = 0; i < kSettingCount; ++i) {
    const std::string name(kSettings[i].env);
    if (auto it = env.find(name); it != env.end()) {
      loader.Apply(i, it->second, Origin{SourceKind::kEnv, name});
    }
  }
  for (const FlagItem& item : flags) {
    if (!item.error.empty()) {
      loader.AddError(item.error);
    } else if (item.index) {
      loader.Apply(*item.index, item.value, Origin{SourceKind::kFlag, item.flag});
    }
  }
  loader.CheckAcrossSettings();
  return std::move(loader).Finish();
}

std::map<std::string, std::string> SnapshotVigilEnvironment() {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (!text.starts_with("VIGIL_")) continue;
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    vars.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return vars;
}

bool HasHelpFlag(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

std::string ServeUsage() {
  std::string usage =
      "usage: vigil serve [--config FILE] [--FLAG VALUE ...]\n"
      "\n"
      "Runs the long-lived service: pattern management, event ingest and alerts over HTTP.\n"
      "\n"
      "Each setting comes from, highest precedence first: a flag, its VIGIL_* environment\n"
      "variable, the config file, the built-in default. Flags are written '--flag VALUE' or\n"
      "'--flag=VALUE'. config/vigil.example.yaml documents every config file key.\n"
      "\n"
      "  --config FILE\n"
      "      YAML config file; '' reads none\n"
      "      (env VIGIL_CONFIG; default: none)\n";
  for (const Setting& s : kSettings) {
    usage += "  ";
    usage += s.flag;
    usage += ' ';
    usage += s.value_name;
    usage += "\n      ";
    usage += s.help;
    usage += "\n      (";
    usage += s.key;
    usage += ", env ";
    usage += s.env;
    usage += "; default: ";
    usage += s.default_text;
    usage += ")\n";
  }
  usage +=
      "\n"
      "An invalid setting is reported with its flag, variable, or file:line:column and key.\n";
  return usage;
}

}  // namespace vigil::app
