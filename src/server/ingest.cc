#include "server/ingest.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>

#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {

Ingest::Ingest(engine::ShardedMatcher* matcher, AlertLog* alerts, Durability* durability)
    : matcher_(matcher), alerts_(alerts), durability_(durability) {}

IngestResult Ingest::Feed(std::string_view body) {
  IngestResult result;
  const int64_t entered = std::chrono::steady_clock::now().time_since_epoch().count();
  events_.clear();
  auto take = [&](std::string_view text) { events_.emplace_back(result.received++, TrimJsonWhitespace(text)); };

  if (TrimJsonWhitespace(body).starts_with('[')) {
    padded_.assign(body);
    padded_.append(simdjson::SIMDJSON_PADDING, '\0');
    simdjson::ondemand::parser array_parser;
    simdjson::ondemand::document doc;
    simdjson::ondemand::array array;
    if (auto err = array_parser.iterate(padded_.data(), body.size(), padded_.size()).get(doc);
        err || (err = doc.get_array().get(array))) {
      result.malformed_body = std::string("malformed JSON array: ") + simdjson::error_message(err);
      return result;
    }
    for (auto element : array) {
      simdjson::ondemand::object object;
      std::string_view raw;
      if (element.get_object().get(object) || object.raw_json().get(raw)) {
        result.rejected.push_back({result.received++, "element is not a JSON object"});
        continue;
      }
      take(raw);  // raw_json() runs to the next token; take() drops the whitespace before it
    }
  } else {
    size_t pos = 0;
    while (pos < body.size()) {
      size_t end = body.find('\n', pos);
      if (end == std::string_view::npos) end = body.size();
      const std::string_view line = body.substr(pos, end - pos);
      pos = end + 1;
      if (!TrimJsonWhitespace(line).empty()) take(line);  // blank lines are not events
    }
  }

  // A body that fits in half the room is taken only when it fits now, so it never waits for
  // the workers. A larger one (even larger than all the room there is) is taken when the
  // workers are not behind, and then waits for them while they make room for its rest.
  if (matcher_->room_now() < std::min(events_.size(), matcher_->room_at_most() / 2)) {
    result.overloaded = true;
    return result;
  }
  texts_.clear();
  for (const auto& [index, text] : events_) texts_.push_back(text);
  const Result<uint64_t> first = durability_->LogEvents(texts_);
  if (!first.ok()) {
    result.unavailable = first.status().message();
    return result;
  }
  // The matcher numbers events by input position; the response, by index in the body.
  problems_.clear();
  alerts_->CollectProblems(&problems_, *first);
  for (size_t k = 0; k < events_.size(); ++k) matcher_->Add(events_[k].second, *first + k, entered);
  matcher_->Flush();  // every event is decided: malformed and late ones are in problems_
  alerts_->CollectProblems(nullptr);
  for (AlertLog::Problem& p : problems_) result.rejected.push_back({events_[p.index].first, std::move(p.reason)});
  std::stable_sort(result.rejected.begin(), result.rejected.end(),
                   [](const auto& a, const auto& b) { return a.index < b.index; });
  result.accepted = result.received - result.rejected.size();
  if (result.accepted > 0) last_event_steady_ms_ = SteadyClockMs();
  return result;
}

}  // namespace vigil::server
