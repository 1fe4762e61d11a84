#include "server/ingest.h"

#include <simdjson.h>

#include "common/json_text.h"
#include "common/time_util.h"

#include <algorithm>
#include <chrono>

namespace vigil::server {

Ingest::Ingest(nfa::FieldSchema* schema, const std::string& time_field, engine::ShardedMatcher* matcher,
               AlertLog* alerts)
    : parser_(schema, time_field), matcher_(matcher), alerts_(alerts) {}

void Ingest::FlushBatch(IngestResult* result) {
  const uint64_t late_before = alerts_->late_events();
  const size_t size = batch_.size();
  batch_.MatchAll(matcher_, entered_steady_ns_);
  // Late events were reported to the sink while matching; they are not accepted.
  result->accepted += size - (alerts_->late_events() - late_before);
}

void Ingest::AddText(std::string_view text, size_t index, IngestResult* result) {
  ++result->received;
  text = TrimJsonWhitespace(text);
  nfa::Event* event = batch_.next();
  const size_t readable = padded_.size() - static_cast<size_t>(text.data() - padded_.data());
  Status parsed = parser_.Parse(text, readable, event);
  if (!parsed.ok()) {
    result->rejected.push_back({index, parsed.message()});
    return;
  }
  event->set_line(index + 1);  // the sink reports problems by line() - 1
  batch_.Keep();
  if (batch_.full()) FlushBatch(result);
}

IngestResult Ingest::Feed(std::string_view body) {
  IngestResult result;
  parser_.Refresh();  // patterns may have added fields since the last request
  padded_.assign(body);
  padded_.append(simdjson::SIMDJSON_PADDING, '\0');
  const std::string_view text(padded_.data(), body.size());
  std::vector<AlertLog::Problem> problems;
  alerts_->CollectProblems(&problems);
  entered_steady_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();

  if (TrimJsonWhitespace(text).starts_with('[')) {
    simdjson::ondemand::parser array_parser;
    simdjson::ondemand::document doc;
    simdjson::ondemand::array array;
    if (auto err = array_parser.iterate(padded_.data(), body.size(), padded_.size()).get(doc);
        err || (err = doc.get_array().get(array))) {
      result.malformed_body = std::string("malformed JSON array: ") + simdjson::error_message(err);
    } else {
      size_t index = 0;
      for (auto element : array) {
        simdjson::ondemand::object object;
        std::string_view raw;
        if (element.get_object().get(object) || object.raw_json().get(raw)) {
          ++result.received;
          result.rejected.push_back({index++, "element is not a JSON object"});
          continue;
        }
        // raw_json() runs to the next token; AddText drops the whitespace before it.
        AddText(raw, index++, &result);
      }
    }
  } else {
    size_t index = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view line = text.substr(pos, end - pos);
      pos = end + 1;
      if (TrimJsonWhitespace(line).empty()) continue;  // blank lines are not events
      AddText(line, index++, &result);
    }
  }
  FlushBatch(&result);
  matcher_->Flush();
  alerts_->CollectProblems(nullptr);
  if (result.accepted > 0) {
    last_event_steady_ms_ = SteadyClockMs();
  }
  result.rejected.insert(result.rejected.end(), problems.begin(), problems.end());
  std::stable_sort(result.rejected.begin(), result.rejected.end(),
                   [](const auto& a, const auto& b) { return a.index < b.index; });
  return result;
}

}  // namespace vigil::server
