#pragma once
// NfaHarness: runs pattern documents over events through the real parser, compiler and
// Matcher, and returns matches in a compact, comparable form.
//
// Each event names itself with an "id" field; a match is written as the ids of its events
// in match order, space-separated ("a1 b2 c3"), with " (timeout)" appended for a timed-out
// partial match. Results are sorted, so tests compare match sets, as Flink's tests do.

#include <doctest/doctest.h>
#include <simdjson.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "nfa/event_parser.h"
#include "nfa/matcher.h"
#include "nfa/pattern.h"

namespace vigil::testing {

struct HarnessResult {
  std::vector<std::string> matches;  // sorted
  std::vector<std::string> problems;  // compile errors, late and rejected events
};

// An event {"id":ID,"ts":TS,"name":NAME,"price":PRICE,"k":KEY} as JSON text.
inline std::string Ev(const std::string& id, int64_t ts, const std::string& name, double price = 0,
                      const std::string& key = "k1") {
  char price_text[32];
  std::snprintf(price_text, sizeof price_text, "%g", price);
  return "{\"id\":\"" + id + "\",\"ts\":" + std::to_string(ts) + ",\"name\":\"" + name +
         "\",\"price\":" + price_text + ",\"k\":\"" + key + "\"}";
}

class CollectingSink : public nfa::MatchSink {
 public:
  void OnMatch(const nfa::Nfa&, std::string_view, const nfa::Match& m) override {
    std::string line;
    for (const nfa::MatchedEvent& e : m.events) {
      if (!line.empty()) line += ' ';
      simdjson::dom::parser p;
      std::string raw(e.event->raw());
      std::string_view id;
      if (p.parse(raw)["id"].get(id)) id = "?";
      line += id;
    }
    if (m.timed_out) line += " (timeout)";
    matches.push_back(line);
  }
  void OnLate(const nfa::Event& e, int64_t) override {
    problems.push_back("late: " + std::string(e.raw()));
  }
  void OnRejected(const nfa::Event& e, const nfa::Nfa&, std::string_view reason) override {
    problems.push_back("rejected: " + std::string(reason) + ": " + std::string(e.raw()));
  }
  std::vector<std::string> matches;
  std::vector<std::string> problems;
};

inline HarnessResult RunPattern(const std::string& pattern_yaml,
                                const std::vector<std::string>& events,
                                int64_t max_out_of_orderness_ms = 0) {
  HarnessResult result;
  nfa::FieldSchema schema;
  nfa::ParsedPatterns parsed = nfa::ParsePatterns(pattern_yaml, "test.yaml", &schema);
  for (const auto& e : parsed.errors) result.problems.push_back(e.ToString());
  std::vector<std::shared_ptr<const nfa::Nfa>> nfas;
  for (nfa::Pattern& p : parsed.patterns) {
    auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(p)));
    if (!compiled.ok()) {
      result.problems.push_back(compiled.status().message());
      continue;
    }
    nfas.push_back(compiled.value());
  }
  if (!result.problems.empty()) return result;
  CollectingSink sink;
  {
    nfa::EventParser parser(&schema, "ts");
    nfa::MatcherOptions options;
    options.max_out_of_orderness_ms = max_out_of_orderness_ms;
    nfa::Matcher matcher(nfas, options, &sink);
    nfa::Event event;
    uint64_t line = 0;
    for (const std::string& text : events) {
      std::string padded = text;
      padded.resize(text.size() + simdjson::SIMDJSON_PADDING, '\0');
      ++line;
      Status s = parser.Parse(std::string_view(padded.data(), text.size()), padded.size(), &event);
      if (!s.ok()) {
        sink.problems.push_back("line " + std::to_string(line) + ": " + s.message());
        continue;
      }
      event.set_line(line);
      matcher.Add(&event);
    }
    matcher.Finish();
  }
  result.matches = std::move(sink.matches);
  std::sort(result.matches.begin(), result.matches.end());
  result.problems = std::move(sink.problems);
  return result;
}

// Builds events named by their ids' first letter: "a1 b2 c3" -> a1 (name a, ts 1), b2, ...
// Timestamps are the position in the list unless given as "id@ts".
inline std::vector<std::string> Stream(const std::string& ids) {
  std::vector<std::string> out;
  size_t pos = 0;
  int64_t ts = 0;
  while (pos < ids.size()) {
    size_t end = ids.find(' ', pos);
    if (end == std::string::npos) end = ids.size();
    std::string token = ids.substr(pos, end - pos);
    pos = end + 1;
    if (token.empty()) continue;
    ++ts;
    int64_t event_ts = ts;
    size_t at = token.find('@');
    if (at != std::string::npos) {
      event_ts = std::stoll(token.substr(at + 1));
      token = token.substr(0, at);
    }
    std::string name;
    for (char c : token) {
      if (std::isalpha(static_cast<unsigned char>(c))) name += c;
      else break;
    }
    out.push_back(Ev(token, event_ts, name));
  }
  return out;
}

inline std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace vigil::testing

namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& v) {
    std::string out = "{";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", \"" : "\"") + v[i] + "\"";
    return String((out + "}").c_str());
  }
};
}  // namespace doctest
