#pragma once
// Ingest: the body of POST /events -> events in the matcher, with a verdict per event.
//
// A body is NDJSON (one object per line) or a JSON array of objects. Each event is parsed
// once (simdjson), keeps its exact bytes, and is matched in batches as `vigil replay` does;
// an event that is malformed, has no usable time, or is late is reported with its index and
// the reason. The events are handed to the matcher's workers before Feed returns; their
// matches follow asynchronously.
// Not thread-safe: used on the server's one thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nfa/event_batch.h"
#include "nfa/event_parser.h"
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
  Ingest(nfa::FieldSchema* schema, const std::string& time_field, engine::ShardedMatcher* matcher,
         AlertLog* alerts);

  // Feeds every event of `body`. `body` is NDJSON unless its first non-blank byte is '['.
  IngestResult Feed(std::string_view body);

  // Wall-clock time (steady clock, ms) when the last event was accepted; 0 before any.
  int64_t last_event_steady_ms() const { return last_event_steady_ms_; }

 private:
  // Parses one event's text (a part of padded_) into the batch, matching it when full.
  void AddText(std::string_view text, size_t index, IngestResult* result);
  void FlushBatch(IngestResult* result);

  nfa::EventParser parser_;
  engine::ShardedMatcher* matcher_;
  int64_t entered_steady_ns_ = 0;  // when the body being fed arrived
  AlertLog* alerts_;
  std::string padded_;  // the body with simdjson's padding after it
  nfa::EventBatch batch_;
  int64_t last_event_steady_ms_ = 0;
};

}  // namespace vigil::server
