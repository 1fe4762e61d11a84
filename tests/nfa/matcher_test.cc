// Matcher: per-key state lifetime, limits, and batching.
#include "nfa/matcher.h"

#include <doctest/doctest.h>

#include "support/nfa_harness.h"

TEST_SUITE_BEGIN("nfa");

namespace {

using namespace vigil::nfa;

struct Fixture {
  explicit Fixture(const std::string& yaml, MatcherOptions options = {}) {
    ParsedPatterns parsed = ParsePatterns(yaml, "m.yaml", &schema);
    REQUIRE(parsed.errors.empty());
    auto nfa = NfaCompiler::Compile(std::make_shared<const Pattern>(std::move(parsed.patterns[0])));
    REQUIRE(nfa.ok());
    parser = std::make_unique<EventParser>(&schema, "ts");
    matcher = std::make_unique<Matcher>(std::vector{nfa.value()}, options, &sink);
  }

  // Parses `events` into their own Events (kept alive by the fixture).
  std::vector<Event*> Parse(const std::vector<std::string>& events) {
    std::vector<Event*> out;
    for (const std::string& text : events) {
      texts.push_back(text + std::string(simdjson::SIMDJSON_PADDING, '\0'));
      parsed.push_back(std::make_unique<Event>());
      const std::string& t = texts.back();
      REQUIRE(parser->Parse(std::string_view(t.data(), text.size()), t.size(), parsed.back().get()).ok());
      out.push_back(parsed.back().get());
    }
    return out;
  }

  void Add(const std::vector<std::string>& events) {
    for (Event* e : Parse(events)) matcher->Add(e);
  }

  FieldSchema schema;
  vigil::testing::CollectingSink sink;
  std::unique_ptr<EventParser> parser;
  std::unique_ptr<Matcher> matcher;
  std::deque<std::string> texts;
  std::vector<std::unique_ptr<Event>> parsed;
};

const char* const kWindowed =
    "id: w\nkey: k\nwithin: 10ms\nsequence:\n  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: b\n    where: name == 'b'\n";

}  // namespace

TEST_CASE("Matcher: a key holds state only while it has runs") {
  Fixture f(kWindowed);
  using vigil::testing::Ev;
  f.Add({Ev("a1", 0, "a", 0, "x"), Ev("a2", 1, "a", 0, "y"), Ev("c1", 2, "c", 0, "z")});
  CHECK(f.matcher->active_keys() == 2);  // x and y have runs; z started nothing
  f.Add({Ev("b1", 3, "b", 0, "x")});
  CHECK(f.matcher->active_keys() == 1);  // x completed: its record is gone
  CHECK(f.matcher->stored_nodes() == 1);  // y's a2
  f.Add({Ev("c2", 20, "c", 0, "z")});      // the watermark passes y's window: its timer fires
  CHECK(f.matcher->active_keys() == 0);
  CHECK(f.matcher->stored_nodes() == 0);
  CHECK(f.sink.matches == std::vector<std::string>{"a1 b1"});
}

TEST_CASE("Matcher: an exploding pattern stays within its per-key limit") {
  MatcherOptions options;
  options.max_partial_matches_per_key = 50;
  Fixture f(
      "id: boom\nkey: k\nsequence:\n  - begin: a\n    one_or_more: true\n"
      "    allow_combinations: true\n  - followed_by_any: b\n    where: name == 'never'\n",
      options);
  std::vector<std::string> events;
  for (int i = 0; i < 40; ++i) events.push_back(vigil::testing::Ev("a" + std::to_string(i), i, "a"));
  f.Add(events);
  CHECK(f.matcher->stats().dropped_partial_matches > 0);
  CHECK(f.matcher->active_keys() == 1);
  CHECK(f.matcher->stored_nodes() > 0);
  f.matcher->Finish();
  CHECK(f.matcher->active_keys() == 0);
  CHECK(f.matcher->stored_nodes() == 0);  // every shared node released: no leak of runs
}

TEST_CASE("Matcher: a batch matches exactly as the same events one at a time") {
  using vigil::testing::Stream;
  const std::string pattern =
      "id: s\nkey: k\nwithin: 4ms\ntimeouts: true\nskip: skip_to_next\nsequence:\n"
      "  - begin: a\n    where: name == 'a'\n    one_or_more: true\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  const auto events = Stream("a1 a2 b1 a3 x1 x2 x3 x4 a4 b2 a5");
  Fixture one(pattern);
  one.Add(events);
  one.matcher->Finish();
  Fixture batched(pattern);
  batched.matcher->AddBatch(batched.Parse(events));
  batched.matcher->Finish();
  CHECK(!one.sink.matches.empty());
  CHECK(one.matcher->stored_nodes() == 0);
  CHECK(batched.matcher->stored_nodes() == 0);
  CHECK(vigil::testing::Sorted(batched.sink.matches) == vigil::testing::Sorted(one.sink.matches));
}

TEST_SUITE_END();
