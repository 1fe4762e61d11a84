// libFuzzer target: condition expressions compiled, then evaluated against a few events with
// two earlier stages holding events, so `$stage` references are exercised too.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <simdjson.h>

#include "nfa/condition.h"
#include "nfa/event.h"
#include "nfa/event_parser.h"
#include "nfa/field_schema.h"

namespace {

constexpr std::string_view kEvents[] = {
    R"({"ts":1000,"type":"payment","amount":4.5,"card":{"country":"FR"},"tags":["a",1,null],"ok":true})",
    R"({"ts":"2024-05-14T09:10:00.250Z","type":"refund","amount":-3,"name":"\u00e9t\u00e9","ok":false})",
    R"({"ts":3000,"amount":1e308,"weird key":{"x":[{"y":2}]},"type":null})",
};

class TwoStages : public vigil::nfa::MatchView {
 public:
  explicit TwoStages(const std::vector<const vigil::nfa::Event*>& events) : events_(events) {}
  std::span<const vigil::nfa::Event* const> StageEvents(int stage) const override {
    // Stage 0 took the first event, stage 1 all of them.
    return stage == 0 ? std::span(events_).first(1) : std::span(events_);
  }

 private:
  const std::vector<const vigil::nfa::Event*>& events_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vigil::nfa::FieldSchema schema;
  auto stages = [](std::string_view name) { return name == "a" ? 0 : name == "b" ? 1 : -1; };
  auto compiled = vigil::nfa::Condition::Compile(
      std::string_view(reinterpret_cast<const char*>(data), size), &schema, stages);
  auto* condition = std::get_if<vigil::nfa::Condition>(&compiled);
  if (condition == nullptr) return 0;

  vigil::nfa::EventParser parser(&schema, "ts");
  std::vector<std::string> texts;
  std::vector<vigil::nfa::Event> events(std::size(kEvents));
  for (std::string_view text : kEvents) {
    texts.emplace_back(text);
    texts.back().append(simdjson::SIMDJSON_PADDING, ' ');
  }
  std::vector<const vigil::nfa::Event*> taken;
  for (size_t i = 0; i < events.size(); ++i) {
    if (parser.Parse(std::string_view(texts[i]).substr(0, kEvents[i].size()), texts[i].size(),
                     &events[i]).ok()) {
      taken.push_back(&events[i]);
    }
  }
  if (taken.empty()) return 0;
  TwoStages match(taken);
  vigil::nfa::EvalScratch scratch;
  for (const vigil::nfa::Event* event : taken) (void)condition->Matches(*event, &match, &scratch);
  return 0;
}
