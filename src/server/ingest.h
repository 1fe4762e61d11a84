#pragma once
// Ingest: the body of POST /events -> events in the matcher, with a verdict per event.
//
// A body is NDJSON (one object per line) or a JSON array of objects. Each event keeps its
// exact bytes and is parsed once, by the matcher's workers; an event that is malformed, has no
// usable time, or is late is reported with its index and the reason before Feed returns. The
// matching itself goes on asynchronously.
// Not thread-safe: used on the server's thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sharded_matcher.h"
#include "server/alert_log.h"

namespace vigil::server {

struct IngestResult {
  size_t received = 0;
  // Events matched: received less the malformed and the late.
  size_t accepted = 0;
  // The malformed and the late events, by index in order, each with its reason.
  std::vector<AlertLog::Problem> rejected;
  // Set when the body as a whole could not be read (a JSON array that does not parse).
  std::string malformed_body;
};

class Ingest {
 public:
  Ingest(engine::ShardedMatcher* matcher, AlertLog* alerts);

  // Feeds every event of `body`. `body` is NDJSON unless its first non-blank byte is '['.
  IngestResult Feed(std::string_view body);

  // Wall-clock time (steady clock, ms) when the last event was accepted; 0 before any.
  int64_t last_event_steady_ms() const { return last_event_steady_ms_; }

 private:
  engine::ShardedMatcher* matcher_;
  AlertLog* alerts_;
  std::string padded_;  // a JSON array body with simdjson's padding after it
  int64_t last_event_steady_ms_ = 0;
};

}  // namespace vigil::server
