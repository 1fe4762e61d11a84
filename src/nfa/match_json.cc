#include "nfa/match_json.h"

#include "common/json_text.h"

namespace vigil::nfa {

void AppendMatchFields(std::string* out, const Nfa& nfa, std::string_view key_json,
                       const Match& match) {
  const Pattern& pattern = nfa.pattern();
  out->append("\"pattern\":");
  AppendJsonString(out, pattern.id);
  out->append(",\"key\":");
  out->append(key_json);
  out->append(",\"match\":{");
  bool first_stage = true;
  for (size_t stage = 0; stage < pattern.stage_names.size(); ++stage) {
    bool open = false;
    for (const MatchedEvent& e : match.events) {
      if (e.stage != static_cast<int>(stage)) continue;
      if (!open) {
        if (!first_stage) out->push_back(',');
        first_stage = false;
        AppendJsonString(out, pattern.stage_names[stage]);
        out->append(":[");
        open = true;
      } else {
        out->push_back(',');
      }
      out->append(e.event->raw());
    }
    if (open) out->push_back(']');
  }
  out->push_back('}');
  if (match.timed_out) out->append(",\"timeout\":true");
}

}  // namespace vigil::nfa
