// The sharded engine's promises that one Matcher does not have to keep: a pattern change
// lands at one input position in every worker, a slow worker slows the input instead of
// losing events, the watermark reaches workers that get no events, and what is decided where
// events enter is reported once, there.
#include "engine/sharded_matcher.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nfa/compiler.h"
#include "nfa/event_key.h"
#include "nfa/pattern.h"

TEST_SUITE_BEGIN("engine");

namespace {

using namespace vigil;

std::shared_ptr<const nfa::Nfa> Compile(const std::string& yaml, nfa::FieldSchema* schema,
                                        uint64_t version = 1) {
  nfa::ParsedPatterns parsed = nfa::ParsePatterns(yaml, "test.yaml", schema);
  REQUIRE(parsed.errors.empty());
  REQUIRE(parsed.patterns.size() == 1);
  parsed.patterns[0].version = version;
  auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(parsed.patterns[0])));
  REQUIRE(compiled.ok());
  return compiled.value();
}

// What the workers found, each match as (pattern version, value of field "n" of its first
// and of its last event, key); collected under a lock since workers report at once.
struct Found {
  uint64_t version;
  int64_t n;
  std::string key;
  int64_t last_n = -1;
  auto operator<=>(const Found&) const = default;
};

class Collector : public engine::InputSink {
 public:
  class Worker : public engine::WorkerSink {
   public:
    Worker(Collector* owner, size_t index) : owner_(owner), index_(index) {}
    void OnMatch(const nfa::Nfa& nfa, std::string_view key, const nfa::Match& m) override {
      if (owner_->slow_worker == index_) std::this_thread::sleep_for(std::chrono::microseconds(200));
      simdjson::dom::parser parser;
      auto n_of = [&parser](const nfa::Event& e) {
        const std::string raw(e.raw());
        int64_t n = -1;
        if (parser.parse(raw)["n"].get(n)) n = -1;
        return n;
      };
      const int64_t n = n_of(*m.events.front().event);
      const int64_t last_n = n_of(*m.events.back().event);
      const std::lock_guard lock(owner_->mutex);
      owner_->found.push_back({nfa.pattern().version, n, std::string(key), last_n});
      own_.push_back(n);
    }
    void OnMark(uint64_t mark) override {
      const std::lock_guard lock(owner_->mutex);
      passed_.emplace_back(mark, own_.size());
    }
    // This worker's matches (the first event's "n" of each), in the order it delivered them,
    // and each mark it passed with how many matches it had delivered by then.
    const std::vector<int64_t>& own() const { return own_; }
    const std::vector<std::pair<uint64_t, size_t>>& passed() const { return passed_; }

   private:
    std::vector<int64_t> own_;
    std::vector<std::pair<uint64_t, size_t>> passed_;
    Collector* owner_;
    size_t index_;
  };

  explicit Collector(size_t workers) {
    for (size_t i = 0; i < workers; ++i) workers_.emplace_back(this, i);
  }
  const Worker& worker(size_t i) const { return workers_[i]; }
  std::vector<engine::WorkerSink*> sinks() {
    std::vector<engine::WorkerSink*> out;
    for (Worker& w : workers_) out.push_back(&w);
    return out;
  }
  void OnMalformed(uint64_t line, std::string_view, std::string_view) override {
    CHECK(std::this_thread::get_id() == input_thread);
    malformed.push_back(line);
  }
  void OnLate(const nfa::Event& e, int64_t) override {
    CHECK(std::this_thread::get_id() == input_thread);
    late.push_back(e.line());
  }
  void OnRejected(const nfa::Event& e, const nfa::Nfa& nfa, std::string_view) override {
    CHECK(std::this_thread::get_id() == input_thread);
    rejected.push_back(nfa.pattern().id + "@" + std::to_string(e.line()));
  }

  std::mutex mutex;
  std::vector<Found> found;
  std::vector<uint64_t> malformed;
  std::vector<uint64_t> late;
  std::vector<std::string> rejected;
  size_t slow_worker = SIZE_MAX;
  const std::thread::id input_thread = std::this_thread::get_id();

 private:
  std::deque<Worker> workers_;
};

// Numbers the texts it adds from 1, as lines.
class Feeder {
 public:
  void Add(engine::ShardedMatcher* matcher, const std::vector<std::string>& texts) {
    for (const std::string& text : texts) matcher->Add(text, ++line_);
  }

 private:
  uint64_t line_ = 0;
};

std::string Event(int64_t ts, int64_t n, const std::string& key) {
  return "{\"ts\":" + std::to_string(ts) + ",\"n\":" + std::to_string(n) + ",\"k\":\"" + key + "\"}";
}

uint32_t ShardOfKey(const std::string& key, size_t workers) {
  std::string identity;
  REQUIRE(nfa::EncodeKey(nfa::Value::String(key), &identity));
  return nfa::ShardOf(nfa::HashKey(identity), static_cast<uint32_t>(workers));
}

constexpr char kEveryEvent[] = R"(
id: every
key: k
sequence:
  - begin: a
    where: n >= 0
)";

engine::EngineOptions Options(size_t workers) {
  engine::EngineOptions options;
  options.workers = workers;
  options.events_per_chunk = 4;
  options.chunks = 3;
  return options;
}

}  // namespace

TEST_CASE("Engine: a replaced pattern switches at one input position in every worker") {
  for (const size_t workers : {2, 4, 7}) {
    for (const int64_t switch_at : {1, 333, 999}) {
      CAPTURE(workers);
      CAPTURE(switch_at);
      nfa::FieldSchema schema;
      auto v1 = Compile(kEveryEvent, &schema, 1);
      auto v2 = Compile(kEveryEvent, &schema, 2);
      Collector collector(workers);
      Feeder feeder;
      {
        engine::ShardedMatcher matcher({v1}, &schema, Options(workers), &collector, collector.sinks());
        for (int64_t n = 0; n < 1000; ++n) {
          if (n == switch_at) REQUIRE(matcher.ReplacePattern(v2).ok());
          feeder.Add(&matcher, {Event(n, n, "k" + std::to_string(n % 64))});
        }
        matcher.Finish();
      }
      REQUIRE(collector.found.size() == 1000);
      for (const Found& f : collector.found) {
        CAPTURE(f.n);
        CHECK(f.version == (f.n < switch_at ? 1u : 2u));
      }
    }
  }
}

TEST_CASE("Engine: a slow worker holds the input back and loses nothing") {
  nfa::FieldSchema schema;
  auto every = Compile(kEveryEvent, &schema);
  Collector collector(3);
  collector.slow_worker = 1;
  Feeder feeder;
  engine::ShardedMatcher matcher({every}, &schema, Options(3), &collector, collector.sinks());
  // The queues hold 2 blocks of 4 events per worker; far more than that goes to the slow one.
  std::vector<std::string> texts;
  for (int64_t n = 0; n < 600; ++n) texts.push_back(Event(n, n, "k" + std::to_string(n % 30)));
  for (size_t i = 0; i < texts.size(); i += 50) {
    feeder.Add(&matcher, std::vector<std::string>(texts.begin() + i, texts.begin() + i + 50));
  }
  matcher.Finish();
  std::vector<bool> seen(600);
  for (const Found& f : collector.found) seen.at(f.n) = true;
  CHECK(collector.found.size() == 600);
  CHECK(std::count(seen.begin(), seen.end(), true) == 600);
  const auto observed = matcher.Observe();
  CHECK(observed.totals.events == 600);
  uint64_t delivered = 0;
  for (const auto& w : observed.workers) delivered += w.events;
  CHECK(delivered == 600);
  CHECK(observed.workers[1].events > 0);
}

TEST_CASE("Engine: a worker passes a mark after the matches of the events before it, before any after") {
  for (const size_t workers : {1, 3}) {
    CAPTURE(workers);
    nfa::FieldSchema schema;
    auto every = Compile(kEveryEvent, &schema);
    Collector collector(workers);
    collector.slow_worker = 0;  // marks then pass at different times
    Feeder feeder;
    engine::ShardedMatcher matcher({every}, &schema, Options(workers), &collector, collector.sinks());
    std::vector<size_t> owned_before(workers);
    for (int64_t n = 0; n < 400; ++n) {
      if (n == 150) matcher.Mark(1);
      if (n == 300) {
        // Mark does not wait; the next may only follow once every worker passed this one.
        matcher.Flush();
        for (size_t w = 0; w < workers; ++w) {
          bool passed = false;
          for (int i = 0; i < 10000 && !passed; ++i) {
            {
              const std::lock_guard lock(collector.mutex);
              passed = collector.worker(w).passed().size() == 1;
            }
            if (!passed) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          REQUIRE(passed);
        }
        matcher.Mark(2);
      }
      const std::string key = "k" + std::to_string(n % 16);
      if (n < 150) ++owned_before[ShardOfKey(key, workers)];
      feeder.Add(&matcher, {Event(n, n, key)});
    }
    matcher.Finish();
    for (size_t w = 0; w < workers; ++w) {
      CAPTURE(w);
      const Collector::Worker& worker = collector.worker(w);
      REQUIRE(worker.passed().size() == 2);
      CHECK(worker.passed()[0] == std::pair<uint64_t, size_t>{1, owned_before[w]});
      CHECK(worker.passed()[1].first == 2);
      for (size_t i = 0; i < worker.own().size(); ++i) {
        CAPTURE(worker.own()[i]);
        CHECK((worker.own()[i] < 150) == (i < worker.passed()[0].second));
        CHECK((worker.own()[i] < 300) == (i < worker.passed()[1].second));
      }
    }
  }
}

TEST_CASE("Engine: the watermark reaches a worker that gets no events and closes its windows") {
  const std::string timeouts = R"(
id: pair
key: k
within: 10ms
timeouts: true
sequence:
  - begin: a
    where: n == 1
  - followed_by: b
    where: n == 2
)";
  for (const size_t workers : {2, 4, 7}) {
    CAPTURE(workers);
    nfa::FieldSchema schema;
    auto pair = Compile(timeouts, &schema);
    Collector collector(workers);
    Feeder feeder;
    engine::ShardedMatcher matcher({pair}, &schema, Options(workers), &collector, collector.sinks());
    // Key "lonely" starts a window; then only events of keys that other workers own arrive,
    // and event time passes its deadline.
    feeder.Add(&matcher, {Event(0, 1, "lonely")});
    matcher.Flush();
    const uint32_t lonely_shard = ShardOfKey("lonely", workers);
    int64_t ts = 1;
    for (int i = 0; ts <= 50; ++i) {
      const std::string key = "busy" + std::to_string(i);
      if (ShardOfKey(key, workers) != lonely_shard) feeder.Add(&matcher, {Event(ts++, 0, key)});
    }
    // Flush hands over what was routed and the watermark, and nothing more: no barrier, no
    // Finish. Only the watermark can close the window.
    matcher.Flush();
    bool closed = false;
    for (int i = 0; i < 1000 && !closed; ++i) {
      {
        const std::lock_guard lock(collector.mutex);
        closed = !collector.found.empty();
      }
      if (!closed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(closed);
    const std::lock_guard lock(collector.mutex);
    REQUIRE(collector.found.size() == 1);
    CHECK(collector.found[0].key == "\"lonely\"");
  }
}

TEST_CASE("Engine: late events and unusable keys are reported once, where events enter") {
  const std::string by_user = R"(
id: by-user
key: user
sequence:
  - begin: a
    where: n >= 0
)";
  nfa::FieldSchema schema;
  auto by_k = Compile(kEveryEvent, &schema);
  auto user = Compile(by_user, &schema);
  engine::EngineOptions options = Options(4);
  options.matcher.max_out_of_orderness_ms = 5;
  Collector collector(4);
  Feeder feeder;
  engine::ShardedMatcher matcher({by_k, user}, &schema, options, &collector, collector.sinks());
  feeder.Add(&matcher, {"{\"ts\":10,\"n\":1,\"k\":\"a\",\"user\":\"u1\"}",  // line 1: both keys
                        "{\"ts\":20,\"n\":2,\"k\":\"b\"}",                  // 2: no user
                        "{\"ts\":12,\"n\":3,\"k\":\"c\",\"user\":\"u2\"}",  // 3: late (watermark 15)
                        "{\"ts\":21,\"n\":4,\"k\":[1],\"user\":\"u3\"}",  // 4: k is a list
                        "{\"ts\":22,"});                                  // 5: malformed
  matcher.Finish();
  CHECK(collector.malformed == std::vector<uint64_t>{5});
  CHECK(collector.late == std::vector<uint64_t>{3});
  CHECK(collector.rejected == std::vector<std::string>{"by-user@2", "every@4"});
  CHECK(collector.found.size() == 4);  // 1 twice, 2 by k, 4 by user
  const auto observed = matcher.Observe();
  CHECK(observed.totals.events == 4);
  CHECK(observed.totals.late_events == 1);
  CHECK(observed.totals.matches == 4);
}

TEST_CASE("Engine: patterns are added and removed at a barrier, and counted over all workers") {
  nfa::FieldSchema schema;
  const std::string pair = R"(
id: pair
key: k
sequence:
  - begin: a
    where: n == 1
  - followed_by: b
    where: n == 2
)";
  auto p = Compile(pair, &schema);
  Collector collector(3);
  Feeder feeder;
  engine::ShardedMatcher matcher({}, &schema, Options(3), &collector, collector.sinks());
  CHECK(matcher.AddPattern(p).ok());
  CHECK(matcher.AddPattern(p).code() == Status::Code::kAlreadyExists);
  for (int i = 0; i < 40; ++i) feeder.Add(&matcher, {Event(i, 1, "k" + std::to_string(i))});
  const auto observed = matcher.Observe();
  CHECK(observed.partial_matches.at("pair") == 40);
  CHECK(observed.active_keys == 40);
  size_t keys = 0;
  for (const auto& w : observed.workers) keys += w.keys;
  CHECK(keys == 40);
  auto dropped = matcher.RemovePattern("pair");
  REQUIRE(dropped.ok());
  CHECK(*dropped == 40);
  CHECK(matcher.RemovePattern("pair").status().code() == Status::Code::kNotFound);
  CHECK(matcher.Observe().active_keys == 0);
}

TEST_CASE("Engine: a pattern added while events flow reads its new fields from the next event on") {
  const std::string by_m = R"(
id: by-m
key: k
sequence:
  - begin: a
    where: m == 'yes'
)";
  for (const size_t workers : {1, 2, 4}) {
    CAPTURE(workers);
    nfa::FieldSchema schema;
    auto every = Compile(kEveryEvent, &schema);
    Collector collector(workers);
    Feeder feeder;
    engine::ShardedMatcher matcher({every}, &schema, Options(workers), &collector, collector.sinks());
    auto event = [](int64_t n) {
      return "{\"ts\":" + std::to_string(n) + ",\"n\":" + std::to_string(n) + ",\"k\":\"k" +
             std::to_string(n % 16) + "\",\"m\":\"yes\"}";
    };
    for (int64_t n = 0; n < 200; ++n) feeder.Add(&matcher, {event(n)});
    // Compiled while the workers parse what came before: the schema grows under them.
    auto m = Compile(by_m, &schema, 7);
    REQUIRE(matcher.AddPattern(m).ok());
    for (int64_t n = 200; n < 400; ++n) feeder.Add(&matcher, {event(n)});
    matcher.Finish();
    size_t by_m_matches = 0;
    for (const Found& f : collector.found) {
      if (f.version != 7) continue;
      ++by_m_matches;
      CHECK(f.n >= 200);
    }
    CHECK(by_m_matches == 200);
  }
}

TEST_CASE("Engine: a pattern added while events are held back sees only those added after it") {
  // P routes by user; Q, added while E1 waits for the watermark, keys by host, so E1's owner
  // under Q may be another worker than the one holding it. Whatever the worker count, Q sees
  // the events added after it and none before.
  const std::string p = R"(
id: p
key: user
sequence:
  - begin: a
    where: host != ''
)";
  const std::string q = R"(
id: q
key: host
sequence:
  - begin: a
    where: n >= 0
)";
  for (const size_t workers : {1, 2, 4, 7}) {
    CAPTURE(workers);
    nfa::FieldSchema schema;
    auto by_user = Compile(p, &schema, 1);
    auto by_host = Compile(q, &schema, 2);
    engine::EngineOptions options = Options(workers);
    options.matcher.max_out_of_orderness_ms = 1000;
    Collector collector(workers);
    Feeder feeder;
    engine::ShardedMatcher matcher({by_user}, &schema, options, &collector, collector.sinks());
    for (int64_t n = 0; n < 20; ++n) {
      if (n == 10) REQUIRE(matcher.AddPattern(by_host).ok());
      feeder.Add(&matcher, {"{\"ts\":" + std::to_string(1000 + n) + ",\"n\":" + std::to_string(n) +
                            ",\"user\":\"u" + std::to_string(n) + "\",\"host\":\"h" +
                            std::to_string(n) + "\"}"});
    }
    matcher.Finish();
    std::vector<std::string> found;
    for (const Found& f : collector.found) {
      found.push_back((f.version == 1 ? "p" : "q") + std::to_string(f.n));
    }
    std::vector<std::string> want;
    for (int n = 0; n < 20; ++n) want.push_back("p" + std::to_string(n));
    for (int n = 10; n < 20; ++n) want.push_back("q" + std::to_string(n));
    std::sort(found.begin(), found.end());
    std::sort(want.begin(), want.end());
    CHECK(found == want);
  }
}

namespace {

engine::EngineOptions SeveralSourcesOptions(size_t workers) {
  engine::EngineOptions options = Options(workers);
  options.several_sources = true;
  return options;
}

// An engine over every event with two sources (Kafka partitions), both announced.
struct TwoSources {
  explicit TwoSources(size_t workers)
      : collector(workers),
        matcher({Compile(kEveryEvent, &schema)}, &schema, SeveralSourcesOptions(workers), &collector,
                collector.sinks()) {
    matcher.SetSourceIdle(0, false);
    matcher.SetSourceIdle(1, false);
  }
  nfa::FieldSchema schema;
  Collector collector;
  engine::ShardedMatcher matcher;
};

}  // namespace

TEST_CASE("Engine: several sources hold the watermark at the slowest, until it goes idle") {
  for (const size_t workers : {1, 3}) {
    CAPTURE(workers);
    TwoSources sources(workers);
    engine::ShardedMatcher& matcher = sources.matcher;
    Collector& collector = sources.collector;
    matcher.Add(Event(100, 1, "x"), 1, 0, 0);
    matcher.Add(Event(10, 2, "y"), 2, 0, 1);
    matcher.Add(Event(50, 3, "z"), 3, 0, 0);  // behind source 0, ahead of source 1: in time
    matcher.Flush();
    CHECK(matcher.watermark_ms() == 10);
    CHECK(collector.late.empty());
    matcher.SetSourceIdle(1, true);  // source 1 no longer holds it back
    CHECK(matcher.watermark_ms() == 100);
    matcher.Add(Event(60, 4, "z"), 4, 0, 0);
    matcher.Add(Event(20, 5, "y"), 5, 0, 1);  // source 1 is back, but the watermark stays
    matcher.Sync();
    CHECK(collector.late == std::vector<uint64_t>{4, 5});
    CHECK(collector.found.size() == 3);
  }
}

TEST_CASE("Engine: with several sources, events are matched in event-time order however the sources interleave") {
  // Strict contiguity: any change in a key's order of events changes the matches.
  const std::string strict = R"(
id: strict
key: k
within: 30ms
sequence:
  - begin: a
    where: n % 2 == 0
  - next: b
    where: n % 3 == 0
)";
  std::mt19937 random(5);
  // Each source's times only grow (so none is late), by steps that often tie across sources.
  struct Sent {
    std::string text;
    uint32_t source;
    int64_t ts;
  };
  std::vector<Sent> sent;
  std::vector<int64_t> source_time(3, 0);
  for (int64_t n = 0; n < 3000; ++n) {
    const auto source = static_cast<uint32_t>(random() % 3);
    source_time[source] += static_cast<int64_t>(random() % (source + 2));
    sent.push_back({Event(source_time[source], n, "k" + std::to_string(random() % 5)), source, source_time[source]});
  }
  // What they must give: one engine fed them in (time, arrival) order, matched as they come.
  std::vector<size_t> in_time_order(sent.size());
  for (size_t i = 0; i < sent.size(); ++i) in_time_order[i] = i;
  std::stable_sort(in_time_order.begin(), in_time_order.end(),
                   [&](size_t x, size_t y) { return sent[x].ts < sent[y].ts; });
  std::vector<Found> expected;
  {
    nfa::FieldSchema schema;
    Collector collector(1);
    engine::ShardedMatcher matcher({Compile(strict, &schema)}, &schema, Options(1), &collector, collector.sinks());
    for (const size_t i : in_time_order) matcher.Add(sent[i].text, i + 1);
    matcher.Finish();
    expected = collector.found;
  }
  std::sort(expected.begin(), expected.end());
  REQUIRE(expected.size() > 100);
  for (const size_t workers : {1, 3}) {
    CAPTURE(workers);
    nfa::FieldSchema schema;
    Collector collector(workers);
    // Chunks larger than a worker's match batches, so batches split.
    engine::EngineOptions options = SeveralSourcesOptions(workers);
    options.events_per_chunk = 256;
    engine::ShardedMatcher matcher({Compile(strict, &schema)}, &schema, options, &collector, collector.sinks());
    for (uint32_t source = 0; source < 3; ++source) matcher.SetSourceIdle(source, false);
    for (size_t i = 0; i < sent.size(); ++i) matcher.Add(sent[i].text, i + 1, 0, sent[i].source);
    matcher.Finish();
    CHECK(collector.late.empty());
    std::sort(collector.found.begin(), collector.found.end());
    CHECK(collector.found == expected);
  }
}

TEST_CASE("Engine: when every source is idle, the watermark is the largest of theirs") {
  TwoSources sources(2);
  engine::ShardedMatcher& matcher = sources.matcher;
  matcher.Add(Event(100, 1, "x"), 1, 0, 0);
  matcher.Add(Event(10, 2, "y"), 2, 0, 1);
  matcher.SetSourceIdle(0, true);  // the fast one first: the slow one still holds it
  CHECK(matcher.watermark_ms() == 10);
  matcher.SetSourceIdle(1, true);
  CHECK(matcher.watermark_ms() == 100);
  CHECK(matcher.source_watermark_ms(1) == 10);
  CHECK(matcher.source_watermark_ms(7) == INT64_MIN);
}
