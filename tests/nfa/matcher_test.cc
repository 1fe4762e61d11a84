// Matcher: per-key state lifetime, limits, and batching.
#include "nfa/matcher.h"

#include <doctest/doctest.h>

#include <fstream>
#include <functional>
#include <iterator>

#include "support/counted_allocations.h"
#include "support/nfa_harness.h"

TEST_SUITE_BEGIN("nfa");

namespace {

using namespace vigil::nfa;

// Also records each match tagged with its pattern ("pa: a1 b1"), and can run a hook on match.
struct TaggingSink : vigil::testing::CollectingSink {
  void OnMatch(const Nfa& nfa, std::string_view key, const Match& m) override {
    CollectingSink::OnMatch(nfa, key, m);
    tagged.push_back(nfa.pattern().id + ": " + matches.back());
    if (on_match) on_match();
  }
  std::vector<std::string> tagged;
  std::function<void()> on_match;
};

struct Fixture {
  // Starts a Matcher with every pattern in `yaml` (documents separated by ---).
  explicit Fixture(const std::string& yaml, MatcherOptions options = {}) {
    ParsedPatterns parsed = ParsePatterns(yaml, "m.yaml", &schema);
    REQUIRE(parsed.errors.empty());
    std::vector<std::shared_ptr<const Nfa>> nfas;
    for (Pattern& p : parsed.patterns) {
      auto nfa = NfaCompiler::Compile(std::make_shared<const Pattern>(std::move(p)));
      REQUIRE(nfa.ok());
      nfas.push_back(nfa.value());
    }
    parser = std::make_unique<EventParser>(&schema, "ts");
    matcher = std::make_unique<Matcher>(std::move(nfas), options, &sink);
  }

  // Compiles the one pattern in `yaml`, as the server would before a hot reload.
  std::shared_ptr<const Nfa> Compile(const std::string& yaml) {
    ParsedPatterns parsed = ParsePatterns(yaml, "reload.yaml", &schema);
    REQUIRE(parsed.errors.empty());
    REQUIRE(parsed.patterns.size() == 1);
    auto nfa =
        NfaCompiler::Compile(std::make_shared<const Pattern>(std::move(parsed.patterns[0])));
    REQUIRE(nfa.ok());
    parser->Refresh();
    return nfa.value();
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
  TaggingSink sink;
  std::unique_ptr<EventParser> parser;
  std::unique_ptr<Matcher> matcher;
  std::deque<std::string> texts;
  std::vector<std::unique_ptr<Event>> parsed;
};

// "a then b", no window.
const char* const kAThenB =
    "id: ab\nkey: k\nsequence:\n  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: b\n    where: name == 'b'\n";

const char* const kWindowed =
    "id: w\nkey: k\nwithin: 10ms\nsequence:\n  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: b\n    where: name == 'b'\n";

// Two windowed patterns over the same events: "a then b" and "a then c", with timeouts.
const char* const kPa =
    "id: pa\nkey: k\nwithin: 10ms\ntimeouts: true\nsequence:\n"
    "  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: b\n    where: name == 'b'\n";
const char* const kPb =
    "id: pb\nkey: k\nwithin: 10ms\ntimeouts: true\nsequence:\n"
    "  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: c\n    where: name == 'c'\n";
// A one-stage pattern: every b matches at once.
const char* const kPc = "id: pc\nkey: k\nsequence:\n  - begin: b\n    where: name == 'b'\n";
// A new version of pa: "a then c".
const char* const kPaV2 =
    "id: pa\nkey: k\nwithin: 10ms\ntimeouts: true\nsequence:\n"
    "  - begin: a\n    where: name == 'a'\n"
    "  - followed_by: c\n    where: name == 'c'\n";

using Code = vigil::Status::Code;

}  // namespace

TEST_CASE("Matcher: events held back for the watermark are recycled, not allocated again, in steady state") {
  // Clumps of 5,000 events 5 s apart, 40 s of out-of-orderness: each clump's first event
  // releases the one eight clumps before it at once, while about 40,000 are held back.
  MatcherOptions options;
  options.max_out_of_orderness_ms = 40000;
  Fixture f(kAThenB, options);
  constexpr int kClumps = 24;
  constexpr int kPerClump = 5000;
  std::vector<std::string> texts;
  for (int c = 0; c < kClumps; ++c) {
    for (int i = 0; i < kPerClump; ++i) {
      texts.push_back("{\"ts\":" + std::to_string(1000000000 + c * 5000) + ",\"k\":\"k" + std::to_string(100 + i % 100) +
                      "\",\"name\":\"x\"}");
    }
  }
  const std::vector<Event*> events = f.Parse(texts);
  const size_t warm = static_cast<size_t>(kClumps - 2) * kPerClump;
  for (size_t i = 0; i < warm; ++i) f.matcher->Add(events[i]);
  const long before = vigil::testing::CountedAllocations();
  for (size_t i = warm; i < events.size(); ++i) f.matcher->Add(events[i]);
  // A container may still grow once in a while (which buckets a clump's times fill varies);
  // an event copied afresh each time would be thousands.
  CHECK(vigil::testing::CountedAllocations() - before <= 10);
  CHECK(f.matcher->stats().events == events.size());
}

TEST_CASE("Matcher: an event the given watermark covers is matched within its batch, after those held back before it") {
  // As a worker with several sources is set up: the watermark comes only from the engine.
  MatcherOptions options;
  options.max_out_of_orderness_ms = INT64_MAX;
  Fixture f(kPc, options);
  const std::vector<Event*> events = f.Parse({R"({"ts":20,"k":"x","name":"b","id":"e1"})",
                                              R"({"ts":10,"k":"x","name":"b","id":"e2"})",
                                              R"({"ts":20,"k":"y","name":"b","id":"e3"})",
                                              R"({"ts":30,"k":"x","name":"b","id":"e4"})"});
  const std::vector<int64_t> watermarks = {5, 10, 25, 25};
  f.matcher->AddBatch(std::span<const Event* const>(events.data(), events.size()), Matcher::KeyHashes{}, watermarks);
  // e2 once the watermark is 10; e1 and e3 (time 20, in arrival order) at 25; e4 waits.
  CHECK(f.sink.matches == std::vector<std::string>{"e2", "e1", "e3"});
  f.matcher->AdvanceWatermark(30);
  CHECK(f.sink.matches == std::vector<std::string>{"e2", "e1", "e3", "e4"});
}

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

TEST_CASE("Matcher: an exploding pattern beside another leaves the other's matches whole") {
  // A combining loop before followed_by_any makes 2^n runs of n events; the per-key limit
  // keeps boom to 50 (its oldest dropped), and cd, on the same key, matches exactly as alone.
  const std::string boom =
      "id: boom\nkey: k\nsequence:\n  - begin: a\n    where: name == 'a'\n    one_or_more: true\n"
      "    allow_combinations: true\n  - followed_by_any: b\n    where: name == 'never'\n";
  const std::string cd =
      "id: cd\nkey: k\nsequence:\n  - begin: c\n    where: name == 'c'\n    times: 2\n"
      "  - followed_by: d\n    where: name == 'd'\n";
  std::vector<std::string> events;
  for (int i = 0; i < 30; ++i) {
    events.push_back(vigil::testing::Ev("a" + std::to_string(i), 2 * i, "a"));
    events.push_back(vigil::testing::Ev("c" + std::to_string(i), 2 * i + 1, "c"));
  }
  events.push_back(vigil::testing::Ev("d", 60, "d"));
  MatcherOptions options;
  options.max_partial_matches_per_key = 50;
  Fixture alone(cd, options);
  alone.Add(events);
  Fixture both(boom + "---\n" + cd, options);
  both.Add(events);
  CHECK(both.matcher->stats().dropped_partial_matches > 0);
  CHECK(alone.sink.matches.size() == 29);
  CHECK(vigil::testing::Sorted(both.sink.matches) == vigil::testing::Sorted(alone.sink.matches));
}

TEST_CASE("Matcher: each pattern's cost counts the events it stepped and times some of them") {
  const std::string boom =
      "id: boom\nkey: k\nsequence:\n  - begin: a\n    one_or_more: true\n"
      "    allow_combinations: true\n  - followed_by_any: b\n    where: name == 'never'\n";
  MatcherOptions options;
  options.max_partial_matches_per_key = 200;
  Fixture f(boom + "---\nid: cheap\nkey: k\nsequence:\n  - begin: c\n    where: name == 'c'\n", options);
  const uint64_t n = 64 * Matcher::kCostSampleEvery;
  std::vector<std::string> events;
  for (uint64_t i = 0; i < n; ++i) {
    // One event in four is a c; cheap passes over the others (its event filter).
    const std::string name = i % 4 == 0 ? "c" : "a";
    events.push_back(vigil::testing::Ev(name + std::to_string(i), static_cast<int64_t>(i), name));
  }
  f.Add(events);
  std::vector<Matcher::PatternCost> costs;
  f.matcher->CollectCosts(&costs);
  REQUIRE(costs.size() == 2);
  CHECK(costs[0].nfa->pattern().id == "boom");
  CHECK(costs[0].events == n);
  CHECK(costs[1].events == n / 4);
  // boom steps up to 200 runs an event, cheap looks at one condition.
  CHECK(costs[0].samples > 0);
  CHECK(costs[1].samples > 0);
  CHECK(costs[0].cpu_ns() > 10 * costs[1].cpu_ns());
  REQUIRE(f.matcher->RemovePattern("boom").ok());
  f.matcher->CollectCosts(&costs);
  REQUIRE(costs.size() == 1);
  CHECK(costs[0].nfa->pattern().id == "cheap");
}

TEST_CASE("Matcher: runs of a pattern without a window expire at the maximum state age") {
  MatcherOptions options;
  options.max_state_age_ms = 100;
  Fixture f(kAThenB, options);
  using vigil::testing::Ev;
  // x's run is 100 ms old when the watermark reaches 150 (key y's event): its timer fires.
  f.Add({Ev("a1", 50, "a", 0, "x"), Ev("a2", 120, "a", 0, "z"), Ev("c1", 150, "c", 0, "y")});
  CHECK(f.matcher->stats().expired_partial_matches == 1);
  CHECK(f.matcher->active_keys() == 1);
  // z's run is 99 ms old at its b: it still matches; x's b finds nothing.
  f.Add({Ev("b1", 219, "b", 0, "z"), Ev("b2", 219, "b", 0, "x")});
  CHECK(f.sink.matches == std::vector<std::string>{"a2 b1"});
  CHECK(f.matcher->active_keys() == 0);
  CHECK(f.matcher->stored_nodes() == 0);
}

TEST_CASE("Matcher: a pattern stays within its limit over all keys, the key that went over first") {
  MatcherOptions options;
  options.max_partial_matches_per_pattern = 10;
  Fixture f("id: ab\nkey: k\nsequence:\n  - begin: a\n    where: name == 'a'\n"
            "  - followed_by_any: b\n    where: name == 'b'\n",
            options);
  using vigil::testing::Ev;
  std::vector<std::string> events;
  for (int i = 0; i < 8; ++i) events.push_back(Ev("x" + std::to_string(i), i, "a", 0, "x"));
  for (int i = 0; i < 8; ++i) events.push_back(Ev("y" + std::to_string(i), 8 + i, "a", 0, "y"));
  f.Add(events);
  CHECK(f.matcher->partial_matches("ab") == 10);
  CHECK(f.matcher->stats().dropped_partial_matches == 6);
  // y went over the limit, so y gave up its oldest runs: x kept all 8, y its newest 2.
  f.Add({Ev("bx", 20, "b", 0, "x"), Ev("by", 21, "b", 0, "y")});
  CHECK(f.sink.matches.size() == 10);
  size_t from_x = 0;
  for (const std::string& m : f.sink.matches) from_x += m.starts_with("x");
  CHECK(from_x == 8);
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

namespace {

// The event filter a pattern compiles to, as "field=v1,v2", or "none".
std::string FilterOf(const std::string& yaml) {
  FieldSchema schema;
  ParsedPatterns parsed = ParsePatterns(yaml, "f.yaml", &schema);
  REQUIRE(parsed.errors.empty());
  auto nfa = NfaCompiler::Compile(std::make_shared<const Pattern>(std::move(parsed.patterns[0])));
  REQUIRE(nfa.ok());
  const std::optional<EventFilter>& filter = nfa.value()->event_filter();
  if (!filter) return "none";
  std::string out = schema.path(filter->slot)[0] + "=";
  for (size_t i = 0; i < filter->values.size(); ++i) out += (i ? "," : "") + filter->values[i];
  return out;
}

// Events named a, b, c, d or x over three keys, times mostly rising, some out of order.
std::vector<std::string> FilterStream(size_t n, uint64_t seed) {
  static const char* const kNames[] = {"a", "a", "b", "b", "c", "d", "x", "x", "x"};
  std::vector<std::string> out;
  uint64_t state = seed;
  auto next = [&state](uint64_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % bound;
  };
  int64_t clock = 0;
  for (size_t i = 0; i < n; ++i) {
    clock += static_cast<int64_t>(next(4));
    const std::string name = kNames[next(std::size(kNames))];
    out.push_back(vigil::testing::Ev(name + std::to_string(i), clock - static_cast<int64_t>(next(3)), name,
                                     static_cast<double>(next(20)), "k" + std::to_string(next(3))));
  }
  return out;
}

}  // namespace

TEST_CASE("Matcher: a pattern's event filter covers every edge that could change a run") {
  const std::string head = "id: p\nkey: k\nwithin: 30ms\nsequence:\n";
  const std::string a = "  - begin: a\n    where: name == 'a'\n";
  CHECK(FilterOf(head + a + "  - followed_by: b\n    where: name in ['b', 'c'] && price > 3\n") ==
        "name=a,b,c");
  CHECK(FilterOf(head + a + "    times: 3\n  - followed_by: b\n    where: name == 'b'\n"
                 "  - not_followed_by: c\n    where: name == 'c'\n") == "name=a,b,c");
  CHECK(FilterOf(head + a + "  - not_followed_by: c\n    where: name == 'c'\n"
                 "  - followed_by: b\n    where: name == 'b' && price > $a[0].price\n") == "name=a,b,c");
  CHECK(FilterOf(head + a + "  - followed_by_any: b\n    where: name == 'b'\n") == "name=a,b");
  // Any event can change a run: strict contiguity ends it, a loop or an optional stage
  // branches on it, a condition on another field or none at all takes it.
  CHECK(FilterOf(head + a + "  - next: b\n    where: name == 'b'\n") == "none");
  CHECK(FilterOf(head + a + "  - not_next: c\n    where: name == 'c'\n"
                 "  - followed_by: b\n    where: name == 'b'\n") == "none");
  CHECK(FilterOf(head + a + "    times: 3\n    consecutive: true\n  - followed_by: b\n    where: name == 'b'\n") ==
        "none");
  CHECK(FilterOf(head + a + "    one_or_more: true\n  - followed_by: b\n    where: name == 'b'\n") == "none");
  CHECK(FilterOf(head + a + "  - followed_by: b\n    where: name == 'b'\n    optional: true\n"
                 "  - followed_by: c\n    where: name == 'c'\n") == "none");
  CHECK(FilterOf(head + a + "  - followed_by: b\n    where: price > 3\n") == "none");
  // Reported timeouts under a skip strategy: a passed-over event would not close its key's
  // windows one by one (see FindEventFilter).
  const std::string abd = a + "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(FilterOf("id: p\nkey: k\nwithin: 30ms\ntimeouts: true\nskip: skip_past_last_event\nsequence:\n" +
                 abd) == "none");
  CHECK(FilterOf("id: p\nkey: k\nwithin: 30ms\ntimeouts: true\nsequence:\n" + abd) == "name=a,b");
  CHECK(FilterOf(head + a + "  - followed_by: b\n") == "none");
}

TEST_CASE("Matcher: a run expiring by age just after another key's match leaves that match alone") {
  // b4 completes A's match (no skip strategy: handed out at once); B's age timer fires in the
  // same Add, and expiring B's run must not hand out A's match again.
  MatcherOptions options;
  options.max_state_age_ms = 10;
  Fixture f(kAThenB, options);
  using vigil::testing::Ev;
  f.Add({Ev("a1", 0, "a", 0, "B"), Ev("a3", 1, "a", 0, "A"), Ev("b4", 10, "b", 0, "A")});
  CHECK(f.sink.matches == std::vector<std::string>{"a3 b4"});
  CHECK(f.matcher->stats().expired_partial_matches == 1);
  f.matcher->Finish();
  CHECK(f.sink.matches == std::vector<std::string>{"a3 b4"});
}

TEST_CASE("Matcher: an event filter with a long list finds its values") {
  std::string names = "'b'";
  for (int i = 0; i < 20; ++i) names += ", 'n" + std::to_string(i) + "'";
  Fixture f("id: p\nkey: k\nsequence:\n  - begin: a\n    where: name == 'a'\n"
            "  - followed_by: b\n    where: name in [" + names + "]\n");
  const std::optional<EventFilter>& filter = f.matcher->pattern("p")->event_filter();
  REQUIRE(filter);
  CHECK(filter->values.size() == 22);
  using vigil::testing::Ev;
  const std::vector<Event*> events = f.Parse({Ev("a1", 1, "a"), Ev("x2", 2, "x"), Ev("n3", 3, "n17"),
                                              Ev("b4", 4, "b"), Ev("z5", 5, "zz")});
  CHECK(filter->Passes(*events[0]));
  CHECK(!filter->Passes(*events[1]));
  CHECK(filter->Passes(*events[2]));
  CHECK(filter->Passes(*events[3]));
  CHECK(!filter->Passes(*events[4]));
  for (Event* e : events) f.matcher->Add(e);
  CHECK(f.sink.matches == std::vector<std::string>{"a1 n3"});
}

TEST_CASE("Matcher: a match held back for a run the per-key limit drops goes out at once") {
  // a2 b3 completes while a1's run, which started first, is alive: held back (skip strategy).
  // a5 makes three runs; the limit of two drops a1's, and the held match goes out then, not
  // with the key's next event (the x events, which the pattern's filter passes over).
  MatcherOptions options;
  options.max_partial_matches_per_key = 2;
  Fixture f("id: p\nkey: k\nskip: skip_past_last_event\nsequence:\n"
            "  - begin: a\n    where: name == 'a'\n"
            "  - followed_by: b\n    where: name == 'b' && price == $a[0].price\n",
            options);
  REQUIRE(f.matcher->pattern("p")->event_filter());
  using vigil::testing::Ev;
  f.Add({Ev("a1", 1, "a", 1), Ev("a2", 2, "a", 2), Ev("b3", 3, "b", 2), Ev("a4", 4, "a", 4)});
  CHECK(f.sink.matches.empty());
  f.Add({Ev("a5", 5, "a", 5)});
  CHECK(f.sink.matches == std::vector<std::string>{"a2 b3"});
  f.Add({Ev("x6", 6, "x"), Ev("x7", 7, "x")});
  CHECK(f.sink.matches == std::vector<std::string>{"a2 b3"});
}

TEST_CASE("Matcher: the shipped rules' event filters") {
  auto shipped = [](const std::string& name) {
    std::ifstream in(std::string(VIGIL_SOURCE_DIR) + "/patterns/" + name + ".yaml");
    REQUIRE(in);
    return FilterOf(std::string(std::istreambuf_iterator<char>(in), {}));
  };
  CHECK(shipped("brute-force") == "type=login,logout");
  CHECK(shipped("account-takeover") == "type=login,password_reset,transfer");
  CHECK(shipped("impossible-travel") == "type=payment");
  CHECK(shipped("card-testing") == "none");  // loops: any event branches a run
  CHECK(shipped("velocity") == "none");
}

TEST_CASE("Matcher: passing over filtered events changes no match, timeout or problem") {
  // Each pattern with a filter beside the same pattern with `|| nothing == 1` in its first
  // condition: the same condition (the field is never there), but no filter. Every run is
  // one Matcher and the engine on 2, 4 and 7 workers, restored from checkpoints (RunPattern).
  const std::string tail = "sequence:\n  - begin: a\n    where: name == 'a'\n";
  const std::vector<std::string> shapes = {
      "within: 20ms\nskip: skip_past_last_event\n" + tail +
          "  - followed_by: b\n    where: name in ['b', 'c'] && price > 3\n"
          "  - followed_by: d\n    where: name == 'd'\n  - not_followed_by: c\n    where: name == 'c'\n",
      "within: 20ms\ntimeouts: true\n" + tail +
          "  - followed_by: b\n    where: name in ['b', 'c'] && price > 3\n"
          "  - followed_by: d\n    where: name == 'd'\n",
      "within: 30ms\nskip: skip_past_last_event\n" + tail + "    times: 2\n"
          "  - followed_by: b\n    where: name == 'b'\n  - not_followed_by: c\n    where: name == 'c'\n",
      "within: 15ms\ntimeouts: true\n" + tail + "  - not_followed_by: c\n    where: name == 'c'\n"
          "  - followed_by: b\n    where: name == 'b' && price > $a[0].price\n",
      "within: 10ms\nskip: no_skip\n" + tail + "  - followed_by_any: b\n    where: name == 'b'\n",
  };
  const std::vector<std::string> events = FilterStream(100, 11);
  for (const std::string& shape : shapes) {
    CAPTURE(shape);
    const std::string filtered = "id: p\nkey: k\n" + shape;
    std::string unfiltered = filtered;
    unfiltered.replace(unfiltered.find("name == 'a'"), 11, "name == 'a' || nothing == 1");
    REQUIRE(FilterOf(filtered) != "none");
    REQUIRE(FilterOf(unfiltered) == "none");
    const vigil::testing::HarnessResult with = vigil::testing::RunPattern(filtered, events, 2);
    const vigil::testing::HarnessResult without = vigil::testing::RunPattern(unfiltered, events, 2);
    CHECK(!without.matches.empty());
    CHECK(with.matches == without.matches);
    CHECK(with.problems == without.problems);
  }
}

TEST_CASE("Matcher: patterns are added, replaced and removed by id") {
  Fixture f(kPa);
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa"});

  CHECK(f.matcher->AddPattern(f.Compile(kPa)).code() == Code::kAlreadyExists);
  CHECK(f.matcher->ReplacePattern(f.Compile(kPb)).status().code() == Code::kNotFound);
  CHECK(f.matcher->RemovePattern("pb").status().code() == Code::kNotFound);
  CHECK(f.matcher->pattern("pb") == nullptr);
  CHECK(f.matcher->partial_matches("pb") == 0);
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa"});

  REQUIRE(f.matcher->AddPattern(f.Compile(kPb)).ok());
  REQUIRE(f.matcher->AddPattern(f.Compile(kPc)).ok());
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa", "pb", "pc"});

  // A replacement takes its predecessor's place in the matching order.
  const auto v2 = f.Compile(kPaV2);
  const auto replaced = f.matcher->ReplacePattern(v2);
  REQUIRE(replaced.ok());
  CHECK(*replaced == 0);
  CHECK(f.matcher->pattern("pa") == v2);
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa", "pb", "pc"});

  const auto removed = f.matcher->RemovePattern("pb");
  REQUIRE(removed.ok());
  CHECK(*removed == 0);
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa", "pc"});
  CHECK(f.matcher->RemovePattern("pb").status().code() == Code::kNotFound);
}

TEST_CASE("Matcher: a partial match survives changes to another pattern") {
  using vigil::testing::Ev;
  Fixture f(std::string(kPa) + "---\n" + kPb);
  f.Add({Ev("a1", 0, "a", 0, "x")});
  REQUIRE(f.matcher->partial_matches("pa") == 1);
  REQUIRE(f.matcher->partial_matches("pb") == 1);
  REQUIRE(f.matcher->stored_nodes() == 2);  // a1 once in each pattern's runs

  std::vector<std::string> expected = {"pa: a1 b1"};
  SUBCASE("replacing it") {
    const auto dropped = f.matcher->ReplacePattern(f.Compile(kPb));
    REQUIRE(dropped.ok());
    CHECK(*dropped == 1);
    CHECK(f.matcher->stored_nodes() == 1);
  }
  SUBCASE("removing it") {
    const auto dropped = f.matcher->RemovePattern("pb");
    REQUIRE(dropped.ok());
    CHECK(*dropped == 1);
    CHECK(f.matcher->stored_nodes() == 1);
    CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa"});
  }
  SUBCASE("adding one") {
    REQUIRE(f.matcher->AddPattern(f.Compile(kPc)).ok());
    CHECK(f.matcher->stored_nodes() == 2);
    CHECK(f.matcher->partial_matches("pc") == 0);
    expected = {"pa: a1 b1", "pb: a1 (timeout)", "pc: b1"};  // pc sees the next event
  }
  CHECK(f.matcher->partial_matches("pa") == 1);
  f.Add({Ev("x1", 1, "x", 0, "other"), Ev("b1", 2, "b", 0, "x")});
  f.matcher->Finish();
  CHECK(vigil::testing::Sorted(f.sink.tagged) == expected);
  CHECK(f.matcher->stored_nodes() == 0);
}

TEST_CASE("Matcher: replacing a pattern drops its runs and frees their nodes") {
  using vigil::testing::Ev;
  Fixture f(kPa);
  f.Add({Ev("a1", 0, "a", 0, "x"), Ev("a2", 1, "a", 0, "y"), Ev("a3", 2, "a", 0, "y")});
  REQUIRE(f.matcher->partial_matches("pa") == 3);
  REQUIRE(f.matcher->stored_nodes() == 3);
  REQUIRE(f.matcher->active_keys() == 2);

  const auto dropped = f.matcher->ReplacePattern(f.Compile(kPaV2));
  REQUIRE(dropped.ok());
  CHECK(*dropped == 3);
  CHECK(f.matcher->partial_matches("pa") == 0);
  CHECK(f.matcher->stored_nodes() == 0);
  CHECK(f.matcher->active_keys() == 0);

  // The old runs neither complete (b would have ended them, c ends the new version's) nor time
  // out when the watermark passes their windows; the new version matches from the next event.
  f.Add({Ev("b1", 3, "b", 0, "x"), Ev("c1", 4, "c", 0, "y"), Ev("z1", 30, "z", 0, "z")});
  CHECK(f.sink.tagged.empty());
  f.Add({Ev("a4", 31, "a", 0, "x"), Ev("c2", 32, "c", 0, "x")});
  f.matcher->Finish();
  CHECK(f.sink.tagged == std::vector<std::string>{"pa: a4 c2"});
  CHECK(f.matcher->stored_nodes() == 0);
}

TEST_CASE("Matcher: removing a pattern with timers pending leaves the others' timers working") {
  using vigil::testing::Ev;
  // pb comes first, so removing it moves pa's slot (and the timers inside it).
  Fixture f(std::string(kPb) + "---\n" + kPa);
  f.Add({Ev("a1", 0, "a", 0, "x"), Ev("a2", 1, "a", 0, "y"), Ev("a3", 2, "a", 0, "z")});
  REQUIRE(f.matcher->active_keys() == 6);
  const auto dropped = f.matcher->RemovePattern("pb");
  REQUIRE(dropped.ok());
  CHECK(*dropped == 3);
  CHECK(f.matcher->active_keys() == 3);
  CHECK(f.matcher->stored_nodes() == 3);

  // The batch path too: its per-pattern scratch follows the new set of patterns.
  f.matcher->AddBatch(f.Parse({Ev("c1", 3, "c", 0, "x"), Ev("q1", 50, "q", 0, "q")}));
  CHECK(vigil::testing::Sorted(f.sink.tagged) ==
        std::vector<std::string>{"pa: a1 (timeout)", "pa: a2 (timeout)", "pa: a3 (timeout)"});
  CHECK(f.matcher->active_keys() == 0);
  CHECK(f.matcher->stored_nodes() == 0);
}

TEST_CASE("Matcher: a removed pattern added again starts empty") {
  using vigil::testing::Ev;
  Fixture f(kPa);
  f.Add({Ev("a1", 0, "a", 0, "x")});
  const auto dropped = f.matcher->RemovePattern("pa");
  REQUIRE(dropped.ok());
  CHECK(*dropped == 1);
  CHECK(f.matcher->pattern_ids().empty());
  f.Add({Ev("b1", 1, "b", 0, "x")});  // no pattern: nothing happens

  REQUIRE(f.matcher->AddPattern(f.Compile(kPa)).ok());
  CHECK(f.matcher->partial_matches("pa") == 0);
  CHECK(f.matcher->stored_nodes() == 0);
  f.Add({Ev("b2", 2, "b", 0, "x")});  // a1's run is gone: no match
  f.Add({Ev("a2", 3, "a", 0, "x"), Ev("b3", 4, "b", 0, "x")});
  f.matcher->Finish();
  CHECK(f.sink.tagged == std::vector<std::string>{"pa: a2 b3"});
}

TEST_CASE("Matcher: a pattern sees the events added after it, even those released before") {
  using vigil::testing::Ev;
  MatcherOptions options;
  options.max_out_of_orderness_ms = 5;
  Fixture f(kPa, options);
  f.Add({Ev("a1", 10, "a", 0, "x")});  // held: the watermark is 5
  REQUIRE(f.matcher->AddPattern(f.Compile(kPb)).ok());
  // a2 comes after pb, so pb sees it; a1 came before pb, so pb never sees it, although the
  // watermark releases both later.
  f.Add({Ev("a2", 11, "a", 0, "x"), Ev("c1", 12, "c", 0, "x"), Ev("q1", 30, "q", 0, "q")});
  f.matcher->Finish();
  CHECK(vigil::testing::Sorted(f.sink.tagged) ==
        std::vector<std::string>{"pa: a1 (timeout)", "pa: a2 (timeout)", "pb: a2 c1"});
}

TEST_CASE("Matcher: a replaced pattern's new version skips the events held back before it") {
  using vigil::testing::Ev;
  MatcherOptions options;
  options.max_out_of_orderness_ms = 5;
  Fixture f(kPa, options);
  f.Add({Ev("a1", 10, "a", 0, "x")});  // held
  REQUIRE(f.matcher->ReplacePattern(f.Compile(kPaV2)).ok());
  f.Add({Ev("a2", 11, "a", 0, "x"), Ev("c1", 12, "c", 0, "x"), Ev("q1", 30, "q", 0, "q")});
  f.matcher->Finish();
  CHECK(vigil::testing::Sorted(f.sink.tagged) == std::vector<std::string>{"pa: a2 c1"});
}

TEST_CASE("Matcher: patterns cannot change from a sink callback") {
  using vigil::testing::Ev;
  Fixture f(kPa);
  std::vector<Code> codes;
  f.sink.on_match = [&] {
    codes.push_back(f.matcher->RemovePattern("pa").status().code());
    codes.push_back(f.matcher->AddPattern(f.Compile(kPb)).code());
    codes.push_back(f.matcher->ReplacePattern(f.Compile(kPaV2)).status().code());
  };
  f.Add({Ev("a1", 0, "a", 0, "x"), Ev("b1", 1, "b", 0, "x")});
  CHECK(codes == std::vector<Code>(3, Code::kFailedPrecondition));
  CHECK(f.matcher->pattern_ids() == std::vector<std::string>{"pa"});
  f.sink.on_match = nullptr;
  CHECK(f.matcher->RemovePattern("pa").ok());
}

TEST_CASE("Matcher: changes written ahead, a key at a time, leave the checkpoint unchanged") {
  // Keys start, change, end (their windows close) and start again; a pattern is replaced
  // between two writes. Writing one changed key ahead after every event, then the rest, must
  // store exactly what one write at the end stores.
  MatcherOptions options;
  options.track_changes = true;
  Fixture ahead(std::string(kPa) + "\n---\n" + kPb, options);
  Fixture at_end(std::string(kPa) + "\n---\n" + kPb, options);
  vigil::testing::MemoryStateStore ahead_store, at_end_store;
  std::vector<std::string> events;
  for (int i = 0; i < 60; ++i) {
    const char* names[] = {"a", "b", "a", "c", "x"};
    events.push_back(vigil::testing::Ev("e" + std::to_string(i), 3 * i, names[i % 5], 0, "k" + std::to_string(i % 7)));
  }
  size_t written_ahead = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (i == 20) {  // a checkpoint, as the barrier takes it
      REQUIRE(ahead.matcher->WriteChanges(&ahead_store).ok());
      REQUIRE(at_end.matcher->WriteChanges(&at_end_store).ok());
      CHECK(ahead_store.keys() == at_end_store.keys());
    }
    if (i == 40) {
      REQUIRE(ahead.matcher->ReplacePattern(ahead.Compile(kPaV2)).ok());
      REQUIRE(at_end.matcher->ReplacePattern(at_end.Compile(kPaV2)).ok());
    }
    ahead.Add({events[i]});
    at_end.Add({events[i]});
    const vigil::Result<size_t> left = ahead.matcher->WriteChangesAhead(&ahead_store, 1);
    REQUIRE(left.ok());
    written_ahead += *left > 0 ? 1 : 0;
  }
  CHECK(written_ahead > 10);  // more was left after most events
  CHECK(ahead_store.keys() != at_end_store.keys());  // what was written ahead is there already
  REQUIRE(ahead.matcher->WriteChanges(&ahead_store).ok());
  REQUIRE(at_end.matcher->WriteChanges(&at_end_store).ok());
  CHECK(!at_end_store.keys().empty());
  CHECK(ahead_store.keys() == at_end_store.keys());
  const vigil::Result<size_t> left = ahead.matcher->WriteChangesAhead(&ahead_store, 1);
  REQUIRE(left.ok());
  CHECK(*left == 0);
}

TEST_CASE("Matcher: writing ahead after many keys ended deletes no more keys per call than asked") {
  // Keys that end in bulk (a window closing for all of them) must not turn one bounded call
  // into a pause of matching.
  MatcherOptions options;
  options.track_changes = true;
  Fixture f(kPa, options);
  vigil::testing::MemoryStateStore store;
  std::vector<std::string> starts;
  for (int i = 0; i < 50; ++i) {
    starts.push_back(vigil::testing::Ev("a" + std::to_string(i), i / 10, "a", 0, "k" + std::to_string(i)));
  }
  f.Add(starts);
  REQUIRE(f.matcher->WriteChanges(&store).ok());
  REQUIRE(store.keys().size() == 50);
  f.Add({vigil::testing::Ev("late", 1000, "x", 0, "other")});  // every window has closed
  const vigil::Result<size_t> left = f.matcher->WriteChangesAhead(&store, 3);
  REQUIRE(left.ok());
  CHECK(store.keys().size() == 47);
  CHECK(*left >= 47);
  REQUIRE(f.matcher->WriteChanges(&store).ok());
  CHECK(store.keys().empty());
}

TEST_SUITE_END();
