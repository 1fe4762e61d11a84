#include "server/ingest.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>

#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {

Ingest::Ingest(engine::ShardedMatcher* matcher, AlertLog* alerts) : matcher_(matcher), alerts_(alerts) {}

IngestResult Ingest::Feed(std::string_view body) {
  IngestResult result;
  const int64_t entered = std::chrono::steady_clock::now().time_since_epoch().count();
  // Events are numbered from 1 for the matcher (its reports say line N); the response counts
  // from 0.
  auto add = [&](std::string_view text) {
    matcher_->Add(TrimJsonWhitespace(text), ++result.received, entered);
  };
  alerts_->CollectProblems(&result.rejected);

  if (TrimJsonWhitespace(body).starts_with('[')) {
    padded_.assign(body);
    padded_.append(simdjson::SIMDJSON_PADDING, '\0');
    simdjson::ondemand::parser array_parser;
    simdjson::ondemand::document doc;
    simdjson::ondemand::array array;
    if (auto err = array_parser.iterate(padded_.data(), body.size(), padded_.size()).get(doc);
        err || (err = doc.get_array().get(array))) {
      result.malformed_body = std::string("malformed JSON array: ") + simdjson::error_message(err);
    } else {
      for (auto element : array) {
        simdjson::ondemand::object object;
        std::string_view raw;
        if (element.get_object().get(object) || object.raw_json().get(raw)) {
          result.rejected.push_back({result.received++, "element is not a JSON object"});
          continue;
        }
        add(raw);  // raw_json() runs to the next token; add() drops the whitespace before it
      }
    }
  } else {
    size_t pos = 0;
    while (pos < body.size()) {
      size_t end = body.find('\n', pos);
      if (end == std::string_view::npos) end = body.size();
      const std::string_view line = body.substr(pos, end - pos);
      pos = end + 1;
      if (!TrimJsonWhitespace(line).empty()) add(line);  // blank lines are not events
    }
  }
  matcher_->Flush();  // every event is decided: malformed and late ones are in `rejected`
  alerts_->CollectProblems(nullptr);
  std::stable_sort(result.rejected.begin(), result.rejected.end(),
                   [](const auto& a, const auto& b) { return a.index < b.index; });
  result.accepted = result.received - result.rejected.size();
  if (result.accepted > 0) last_event_steady_ms_ = SteadyClockMs();
  return result;
}

}  // namespace vigil::server
