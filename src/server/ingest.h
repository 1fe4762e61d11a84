#pragma once
// Ingest: the body of POST /events -> events in the matcher, with a verdict per event.
//
// A body is NDJSON (one object per line) or a JSON array of objects. Its events are first
// numbered and logged durably (Durability::LogEvents): nothing is matched or acknowledged
// before that, and when logging fails nothing of the body counts. Each event keeps its exact
// bytes and is parsed once, by the matcher's workers; an event that is malformed, has no
// usable time, or is late is reported with its index and the reason before Feed returns. The
// matching itself goes on asynchronously. When the workers are behind, so that the body would
// have to wait for them, nothing is taken and the caller is told to come back (overloaded):
// memory stays bounded and the server's thread stays free for other requests.
// Not thread-safe: used on the server's thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/sharded_matcher.h"
#include "server/alert_log.h"
#include "server/durability.h"

namespace vigil::server {

struct IngestResult {
  size_t received = 0;
  // Events matched: received less the malformed and the late.
  size_t accepted = 0;
  // The malformed and the late events, by index in order, each with its reason.
  std::vector<AlertLog::Problem> rejected;
  // Set when the body as a whole could not be read (a JSON array that does not parse).
  std::string malformed_body;
  // Set when the events could not be logged: none was taken.
  std::string unavailable;
  // Set when matching is too far behind to take the body without blocking: none was taken.
  bool overloaded = false;
};

class Ingest {
 public:
  Ingest(engine::ShardedMatcher* matcher, AlertLog* alerts, Durability* durability);

  // Feeds every event of `body`. `body` is NDJSON unless its first non-blank byte is '['.
  IngestResult Feed(std::string_view body);

  // Wall-clock time (steady clock, ms) when the last event was accepted; 0 before any.
  int64_t last_event_steady_ms() const { return last_event_steady_ms_; }

 private:
  engine::ShardedMatcher* matcher_;
  AlertLog* alerts_;
  Durability* durability_;
  std::string padded_;  // a JSON array body with simdjson's padding after it
  // The body's events: (index in the body, text), and the texts alone.
  std::vector<std::pair<size_t, std::string_view>> events_;
  std::vector<std::string_view> texts_;
  std::vector<AlertLog::Problem> problems_;
  int64_t last_event_steady_ms_ = 0;
};

}  // namespace vigil::server
