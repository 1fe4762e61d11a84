#pragma once
// NfaHarness: runs pattern documents over events through the real parser, compiler and
// Matcher (and the sharded engine, which must agree with it), and returns matches in a
// compact, comparable form.
//
// Each event names itself with an "id" field; a match is written as the ids of its events
// in match order, space-separated ("a1 b2 c3"), with " (timeout)" appended for a timed-out
// partial match. Results are sorted, so tests compare match sets, as Flink's tests do.

#include <doctest/doctest.h>
#include <simdjson.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/sharded_matcher.h"
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

inline std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
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

// Adapts the CollectingSink to the sharded engine: matches from each worker (under a lock,
// since workers run at once), late events and unusable keys from the input thread.
class ShardedCollector : public engine::InputSink {
 public:
  class Worker : public engine::WorkerSink {
   public:
    explicit Worker(ShardedCollector* owner) : owner_(owner) {}
    void OnMatch(const nfa::Nfa& nfa, std::string_view key, const nfa::Match& m) override {
      const std::lock_guard lock(owner_->mutex_);
      owner_->sink_.OnMatch(nfa, key, m);
    }

   private:
    ShardedCollector* owner_;
  };

  explicit ShardedCollector(size_t workers) {
    for (size_t i = 0; i < workers; ++i) workers_.emplace_back(this);
  }
  std::vector<engine::WorkerSink*> worker_sinks() {
    std::vector<engine::WorkerSink*> out;
    for (Worker& w : workers_) out.push_back(&w);
    return out;
  }
  void OnMalformed(uint64_t line, std::string_view, std::string_view reason) override {
    sink_.problems.push_back("line " + std::to_string(line) + ": " + std::string(reason));
  }
  void OnLate(const nfa::Event& e, int64_t watermark) override { sink_.OnLate(e, watermark); }
  void OnRejected(const nfa::Event& e, const nfa::Nfa& nfa, std::string_view reason) override {
    sink_.OnRejected(e, nfa, reason);
  }
  CollectingSink& sink() { return sink_; }

 private:
  std::mutex mutex_;
  CollectingSink sink_;
  std::deque<Worker> workers_;
};

// A state backend in memory: what a checkpoint wrote, key by key, for restoring from.
class MemoryStateStore : public nfa::StateWriter {
 public:
  void DropPattern(std::string_view id) override {
    std::erase_if(keys_, [id](const auto& entry) { return entry.first.first == id; });
  }
  void DropAll() override { keys_.clear(); }
  void PutKey(std::string_view pattern_id, std::string_view identity, std::string_view state) override {
    keys_[{std::string(pattern_id), std::string(identity)}] = std::string(state);
  }
  void DeleteKey(std::string_view pattern_id, std::string_view identity) override {
    keys_.erase({std::string(pattern_id), std::string(identity)});
  }
  // A ShardedMatcher::KeyScan over the keys (read-only: workers scan at once).
  Status Scan(const engine::ShardedMatcher::KeyVisitor& visit) const {
    for (const auto& [key, state] : keys_) {
      if (Status s = visit(key.first, key.second, state); !s.ok()) return s;
    }
    return Status::Ok();
  }
  const std::map<std::pair<std::string, std::string>, std::string>& keys() const { return keys_; }

 private:
  std::map<std::pair<std::string, std::string>, std::string> keys_;
};

// Spills in memory, one per worker, falling back to a restored checkpoint's keys.
class MemorySpills {
 public:
  MemorySpills(size_t workers, const MemoryStateStore* restored) {
    for (size_t i = 0; i < workers; ++i) spills_.push_back(std::make_unique<Spill>(restored));
  }
  std::vector<nfa::StateSpill*> spills() {
    std::vector<nfa::StateSpill*> out;
    for (auto& s : spills_) out.push_back(s.get());
    return out;
  }

 private:
  class Spill : public nfa::StateSpill {
   public:
    explicit Spill(const MemoryStateStore* restored) : restored_(restored) {}
    Status Put(std::string_view p, std::string_view k, std::string_view v) override {
      keys_[{std::string(p), std::string(k)}] = std::string(v);
      return Status::Ok();
    }
    Result<std::string> Get(std::string_view p, std::string_view k, bool take) override {
      const std::pair<std::string, std::string> key{std::string(p), std::string(k)};
      if (auto it = keys_.find(key); it != keys_.end()) {
        std::string value = it->second;
        if (take) keys_.erase(it);
        return value;
      }
      if (restored_) {
        if (auto it = restored_->keys().find(key); it != restored_->keys().end()) return it->second;
      }
      return Status::NotFound("no spilled state");
    }

   private:
    const MemoryStateStore* restored_;
    std::map<std::pair<std::string, std::string>, std::string> keys_;
  };
  std::vector<std::unique_ptr<Spill>> spills_;
};

// A store's writer for all of an engine's workers: they write different keys, but at once,
// so through a lock. Drops apply to the store at once, so no pattern may be dropped while a
// worker writes ahead.
class LockedWriter : public nfa::StateWriter {
 public:
  explicit LockedWriter(MemoryStateStore* store) : store_(store) {}
  void DropPattern(std::string_view id) override {
    const std::lock_guard lock(mutex_);
    store_->DropPattern(id);
  }
  void PutKey(std::string_view p, std::string_view k, std::string_view v) override {
    const std::lock_guard lock(mutex_);
    store_->PutKey(p, k, v);
  }
  void DeleteKey(std::string_view p, std::string_view k) override {
    const std::lock_guard lock(mutex_);
    store_->DeleteKey(p, k);
  }
  void DropAll() override {
    const std::lock_guard lock(mutex_);
    store_->DropAll();
  }
  std::vector<nfa::StateWriter*> for_workers(const engine::ShardedMatcher& matcher) {
    return std::vector<nfa::StateWriter*>(matcher.workers(), this);
  }

 private:
  MemoryStateStore* store_;
  std::mutex mutex_;
};

// Takes a checkpoint of `matcher` through `writer`.
inline std::string CheckpointInto(engine::ShardedMatcher* matcher, LockedWriter* writer) {
  Result<std::string> progress = matcher->Checkpoint(writer->for_workers(*matcher));
  REQUIRE(progress.ok());
  return *progress;
}

// Feeds `events` to a Matcher, one at a time, and finishes. Lines that do not parse are
// reported to `problems`.
inline void FeedOneByOne(nfa::Matcher* matcher, nfa::FieldSchema* schema,
                         const std::vector<std::string>& events, std::vector<std::string>* problems) {
  nfa::EventParser parser(schema, "ts");
  nfa::Event event;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string padded = events[i] + std::string(simdjson::SIMDJSON_PADDING, '\0');
    Status s = parser.Parse(std::string_view(padded.data(), events[i].size()), padded.size(), &event);
    if (!s.ok()) {
      problems->push_back("line " + std::to_string(i + 1) + ": " + s.message());
      continue;
    }
    event.set_line(i + 1);
    matcher->Add(&event);
  }
  matcher->Finish();
}

// Stops the engine at every position of `events`, checkpoints it (also once half-way there, so
// the last checkpoint writes only what changed since, part of it written ahead), restores the
// checkpoint into a new engine with another worker count and goes on there: the matches and
// problems before the stop plus those after it must be the uninterrupted run's.
inline void CheckRestoreAtEveryPosition(const std::vector<std::shared_ptr<const nfa::Nfa>>& nfas,
                                        nfa::FieldSchema* schema, nfa::MatcherOptions options,
                                        const std::vector<std::string>& events,
                                        const HarnessResult& expected) {
  options.track_changes = true;
  for (size_t stop = 1; stop < events.size(); ++stop) {
    CAPTURE(stop);
    ShardedCollector before(2), after(3);
    engine::EngineOptions engine_options;
    engine_options.matcher = options;
    engine_options.events_per_chunk = 2;
    engine_options.chunks = 3;
    MemoryStateStore store;
    LockedWriter writer(&store);
    std::string progress;
    {
      engine_options.workers = 2;
      engine::ShardedMatcher first(nfas, schema, engine_options, &before, before.worker_sinks());
      for (size_t i = 0; i < stop; ++i) {
        first.Add(events[i], i + 1);
        if (i + 1 == stop / 2) {
          CheckpointInto(&first, &writer);
          first.WriteAhead(writer.for_workers(first));
        }
      }
      progress = CheckpointInto(&first, &writer);
    }
    // The second engine keeps almost nothing in memory: restored keys stay in the checkpoint
    // and every key goes to the spill after each step.
    engine_options.workers = 3;
    engine_options.matcher.memory_budget_bytes = 3;
    MemorySpills spills(3, &store);
    engine_options.spills = spills.spills();
    engine::ShardedMatcher second(nfas, schema, engine_options, &after, after.worker_sinks());
    REQUIRE(second.Restore(progress, [&store](const auto& visit) { return store.Scan(visit); }).ok());
    for (size_t i = stop; i < events.size(); ++i) second.Add(events[i], i + 1);
    second.Finish();
    std::vector<std::string> matches = before.sink().matches, problems = before.sink().problems;
    matches.insert(matches.end(), after.sink().matches.begin(), after.sink().matches.end());
    problems.insert(problems.end(), after.sink().problems.begin(), after.sink().problems.end());
    CHECK(Sorted(matches) == expected.matches);
    CHECK(Sorted(problems) == Sorted(expected.problems));
  }
}

// Runs the pattern documents over the events with one Matcher and, to pin that sharding
// changes nothing, with the engine on 2, 4 and 7 workers (which parse the texts themselves):
// each must give the same matches and report the same problems. And a checkpoint restored at
// any position changes nothing either (CheckRestoreAtEveryPosition).
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
  nfa::MatcherOptions options;
  options.max_out_of_orderness_ms = max_out_of_orderness_ms;
  CollectingSink sink;
  {
    nfa::Matcher matcher(nfas, options, &sink);
    FeedOneByOne(&matcher, &schema, events, &sink.problems);
  }
  result.matches = Sorted(std::move(sink.matches));
  result.problems = std::move(sink.problems);
  for (const size_t workers : {2, 4, 7}) {
    CAPTURE(workers);
    ShardedCollector collector(workers);
    engine::EngineOptions engine_options;
    engine_options.matcher = options;
    engine_options.workers = workers;
    // With 4 workers, a memory budget so small that every key is spilled after each step.
    MemorySpills spills(workers, nullptr);
    if (workers == 4) {
      engine_options.matcher.memory_budget_bytes = 4;
      engine_options.spills = spills.spills();
    }
    // Tiny chunks: chunk boundaries fall everywhere.
    engine_options.events_per_chunk = 2;
    engine_options.chunks = 3;
    {
      engine::ShardedMatcher matcher(nfas, &schema, engine_options, &collector,
                                     collector.worker_sinks());
      for (size_t i = 0; i < events.size(); ++i) matcher.Add(events[i], i + 1);
      matcher.Finish();
    }
    CHECK(Sorted(collector.sink().matches) == result.matches);
    CHECK(Sorted(collector.sink().problems) == Sorted(result.problems));
  }
  CheckRestoreAtEveryPosition(nfas, &schema, options, events, result);
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
