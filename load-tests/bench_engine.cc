// Google Benchmark micro-benchmarks of the per-event path: parsing, condition evaluation,
// and matching with a growing number of partial matches per key.
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <memory>
#include <string>
#include <vector>

#include "nfa/compiler.h"
#include "nfa/condition.h"
#include "nfa/event_parser.h"
#include "nfa/matcher.h"
#include "nfa/pattern.h"

namespace {

using namespace vigil::nfa;

constexpr char kEvent[] =
    R"({"card_id":"c000680043","ts":1717200000000,"amount":1967.67,"merchant":"m0770","country":"US","type":"payment","card_present":false,"account_id":"a000340021","user":"u000340021","device":"d000edc2a"})";

std::string Padded(std::string_view text) {
  std::string s(text);
  s.resize(text.size() + simdjson::SIMDJSON_PADDING, '\0');
  return s;
}

class NullSink : public MatchSink {
 public:
  void OnMatch(const Nfa&, std::string_view, const Match&) override { ++matches; }
  void OnLate(const Event&, int64_t) override {}
  void OnRejected(const Event&, const Nfa&, std::string_view) override {}
  int64_t matches = 0;
};

std::shared_ptr<const Nfa> CompileOne(const std::string& yaml, FieldSchema* schema) {
  ParsedPatterns parsed = ParsePatterns(yaml, "bench.yaml", schema);
  if (!parsed.errors.empty()) std::abort();
  auto nfa = NfaCompiler::Compile(std::make_shared<const Pattern>(std::move(parsed.patterns[0])));
  if (!nfa.ok()) std::abort();
  return nfa.value();
}

void BM_ParseEvent(benchmark::State& state) {
  FieldSchema schema;
  for (const char* f : {"card_id", "amount", "type", "country"}) schema.Intern({f});
  EventParser parser(&schema, "ts");
  const std::string text = Padded(kEvent);
  Event event;
  for (auto _ : state) {
    auto s = parser.Parse(std::string_view(text.data(), sizeof(kEvent) - 1), text.size(), &event);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * (sizeof(kEvent) - 1));
}
BENCHMARK(BM_ParseEvent);

void BM_ConditionEvaluate(benchmark::State& state) {
  FieldSchema schema;
  auto compiled = Condition::Compile(
      "type == 'payment' && amount < 5 && country in ['US', 'CA', 'GB']", &schema,
      [](std::string_view) { return -1; });
  const Condition& condition = std::get<Condition>(compiled);
  EventParser parser(&schema, "ts");
  const std::string text = Padded(kEvent);
  Event event;
  if (!parser.Parse(std::string_view(text.data(), sizeof(kEvent) - 1), text.size(), &event).ok()) {
    std::abort();
  }
  EvalScratch scratch;
  for (auto _ : state) benchmark::DoNotOptimize(condition.Matches(event, nullptr, &scratch));
}
BENCHMARK(BM_ConditionEvaluate);

// One key holding `range(0)` runs of a looping stage; each further event extends all of them.
// The cost per event grows with the runs (each is a separate partial match), but the event
// itself is parsed, evaluated for event-only conditions and stored once.
void BM_EventWithPartialMatches(benchmark::State& state) {
  FieldSchema schema;
  auto nfa = CompileOne(
      "id: loop\nkey: card_id\nwithin: 1d\nsequence:\n"
      "  - begin: a\n    where: type == 'payment'\n    one_or_more: true\n"
      "  - followed_by: b\n    where: type == 'never'\n",
      &schema);
  EventParser parser(&schema, "ts");
  NullSink sink;
  MatcherOptions options;
  options.max_partial_matches_per_key = static_cast<size_t>(state.range(0));
  Matcher matcher({nfa}, options, &sink);
  std::string text = Padded(kEvent);
  Event event;
  const size_t length = sizeof(kEvent) - 1;
  for (int64_t i = 0; i < state.range(0); ++i) {
    if (!parser.Parse(std::string_view(text.data(), length), text.size(), &event).ok()) std::abort();
    matcher.Add(&event);
  }
  for (auto _ : state) {
    if (!parser.Parse(std::string_view(text.data(), length), text.size(), &event).ok()) std::abort();
    matcher.Add(&event);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EventWithPartialMatches)->Arg(1)->Arg(16)->Arg(256);

}  // namespace

BENCHMARK_MAIN();
