// vigil-bench-state: what durability costs, measured on the engine and the state backend.
//
//   vigil-bench-state [--keys N] [--events-per-key E] [--changed-percent P] [--workers W]
//                     [--dir DIR] [--rounds R]
//
// 1. Fills N keys with partial matches: E rounds of one ~200-byte event per key, for a
//    pattern that keeps every event (a card's authorisations until a capture, within a day).
//    Reported: events/s without durability, and (fresh engine, same events) with it: changes
//    tracked, every event appended to an input log in batches of 1000 and committed (as
//    POST /events does), and a checkpoint every 10 s of running time; R rounds of each,
//    alternated, and their medians.
// 2. A full checkpoint of that state, then one after P% of the keys took one more event:
//    duration, bytes written, keys written (the second should cost what changed, not what
//    is held).
// 3. Recovery: a new engine restores the newest checkpoint; time to a matcher ready to go on.
// Prints one line per measurement, "name value unit".

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sharded_matcher.h"
#include "nfa/compiler.h"
#include "nfa/pattern.h"
#include "state/checkpoint_store.h"
#include "state/input_log.h"

namespace {

using namespace vigil;
using Clock = std::chrono::steady_clock;

struct Options {
  size_t keys = 1000000;
  size_t events_per_key = 3;
  double changed_percent = 1;
  size_t workers = 2;
  std::string dir = "bench-state";
  size_t rounds = 3;
};

const char* const kPattern =
    "id: hold\nkey: card_id\nwithin: 1d\nsequence:\n"
    "  - begin: auth\n    where: type == 'auth'\n    one_or_more: true\n"
    "  - followed_by: capture\n    where: type == 'capture'\n";

class NoMatches : public engine::InputSink, public engine::WorkerSink {
 public:
  void OnMalformed(uint64_t, std::string_view, std::string_view reason) override {
    std::fprintf(stderr, "malformed: %.*s\n", static_cast<int>(reason.size()), reason.data());
    std::exit(1);
  }
  void OnLate(const nfa::Event&, int64_t) override {}
  void OnRejected(const nfa::Event&, const nfa::Nfa&, std::string_view) override {}
  void OnMatch(const nfa::Nfa&, std::string_view, const nfa::Match&) override {}
};

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Report(const char* name, double value, const char* unit) {
  std::printf("%-36s %12.3f %s\n", name, value, unit);
  std::fflush(stdout);
}

// Event `round` of key `key`: ~200 bytes of JSON.
void EventText(size_t key, size_t round, int64_t ts, std::string* out) {
  char text[256];
  const int n = std::snprintf(
      text, sizeof text,
      "{\"card_id\":\"c%09zu\",\"ts\":%lld,\"type\":\"auth\",\"amount\":%zu.%02zu,\"merchant\":\"m%05zu\","
      "\"country\":\"US\",\"card_present\":false,\"device\":\"d%08zx\",\"note\":\"round %zu of a held card\"}",
      key, static_cast<long long>(ts), 1 + (key * 7 + round) % 500, (key + round) % 100, (key * 13) % 20000,
      key * 2654435761u, round);
  out->assign(text, static_cast<size_t>(n));
}

struct Engine {
  Engine(const Options& options, bool durable) {
    nfa::ParsedPatterns parsed = nfa::ParsePatterns(kPattern, "bench.yaml", &schema);
    auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(parsed.patterns[0])));
    if (!compiled.ok()) std::exit(2);
    engine::EngineOptions engine_options;
    engine_options.workers = options.workers;
    engine_options.matcher.track_changes = durable;
    std::vector<engine::WorkerSink*> sinks(options.workers, &sink);
    matcher = std::make_unique<engine::ShardedMatcher>(std::vector{compiled.value()}, &schema, engine_options,
                                                       &sink, sinks);
  }
  nfa::FieldSchema schema;
  NoMatches sink;
  std::unique_ptr<engine::ShardedMatcher> matcher;
};

std::unique_ptr<state::CheckpointStore> OpenStore(const std::string& dir) {
  auto store = state::CheckpointStore::Open({dir, 2});
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().message().c_str());
    std::exit(1);
  }
  return std::move(*store);
}

state::CheckpointMeta Checkpoint(Engine& e, state::CheckpointStore* store, uint64_t position) {
  const int64_t started = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
  state::CheckpointMeta meta;
  Result<std::string> progress = e.matcher->Checkpoint(store->Writers(e.matcher->workers()));
  if (!progress.ok()) std::exit(3);
  meta.engine_progress = std::move(*progress);
  meta.input_position = position;
  auto committed = store->Commit(std::move(meta), started);
  if (!committed.ok()) {
    std::fprintf(stderr, "%s\n", committed.status().message().c_str());
    std::exit(3);
  }
  return *committed;
}

// Feeds every round to `e`; with `log`, also as POST /events would (log, commit per 1000) and
// a checkpoint every 10 s. Returns events/s.
double Fill(const Options& options, Engine& e, state::InputLog* log, state::CheckpointStore* store) {
  std::string text;
  uint64_t position = 0;
  std::vector<std::string> batch;
  auto start = Clock::now();
  auto last_checkpoint = start;
  for (size_t round = 0; round < options.events_per_key; ++round) {
    for (size_t key = 0; key < options.keys; ++key) {
      EventText(key, round, 1717200000000 + static_cast<int64_t>(round * options.keys + key), &text);
      ++position;
      if (log) log->AppendEvent(position, text);
      e.matcher->Add(text, position);
      if (position % 1000 == 0) {
        if (log && !log->Commit().ok()) std::exit(4);
        e.matcher->Flush();
        if (store && Seconds(last_checkpoint) >= 10) {
          Checkpoint(e, store, position);
          last_checkpoint = Clock::now();
        }
      }
    }
  }
  if (log && !log->Commit().ok()) std::exit(4);
  e.matcher->Sync();
  return static_cast<double>(position) / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--keys") options.keys = std::stoul(value);
    else if (flag == "--events-per-key") options.events_per_key = std::stoul(value);
    else if (flag == "--changed-percent") options.changed_percent = std::stod(value);
    else if (flag == "--workers") options.workers = std::stoul(value);
    else if (flag == "--dir") options.dir = value;
    else if (flag == "--rounds") options.rounds = std::max<size_t>(1, std::stoul(value));
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of load-tests/bench_state.cc)\n", flag.c_str());
      return 2;
    }
  }
  namespace fs = std::filesystem;
  fs::remove_all(options.dir);
  const double events = static_cast<double>(options.keys * options.events_per_key);

  // Alternated rounds, medians: the machine's speed drifts, and the first fill of a process
  // also pays for growing its heap.
  std::vector<double> in_memory_rates, durable_rates;
  for (size_t round = 0; round < options.rounds; ++round) {
    {
      Engine in_memory(options, false);
      in_memory_rates.push_back(Fill(options, in_memory, nullptr, nullptr));
    }
    fs::remove_all(options.dir);
    Engine durable(options, true);
    std::vector<std::string> warnings;
    auto log = state::InputLog::Open({(fs::path(options.dir) / "input").string()}, &warnings);
    auto store = OpenStore((fs::path(options.dir) / "state").string());
    if (!log.ok() || !store->StartEmpty().ok()) return 1;
    durable_rates.push_back(Fill(options, durable, log->get(), store.get()));
    std::printf("round %zu: in memory %.0f, durable %.0f events/s\n", round + 1, in_memory_rates.back(),
                durable_rates.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  Report("fill in memory (median)", median(in_memory_rates), "events/s");
  Report("fill durable (median)", median(durable_rates), "events/s");
  Report("durable / in memory", median(durable_rates) / median(in_memory_rates), "");
  fs::remove_all(options.dir);
  Engine e(options, true);
  std::vector<std::string> warnings;
  auto log = state::InputLog::Open({(fs::path(options.dir) / "input").string()}, &warnings);
  if (!log.ok()) return 1;
  auto store = OpenStore((fs::path(options.dir) / "state").string());
  if (!store->StartEmpty().ok()) return 1;
  Report("fill durable", Fill(options, e, log->get(), store.get()), "events/s");
  const auto observed = e.matcher->Observe();
  Report("keys", static_cast<double>(observed.active_keys), "keys");
  Report("state in memory", static_cast<double>(observed.memory_bytes) / 1e6, "MB");

  auto started = Clock::now();
  state::CheckpointMeta full = Checkpoint(e, store.get(), static_cast<uint64_t>(events));
  Report("checkpoint, all keys changed", Seconds(started), "s");
  Report("  keys written", static_cast<double>(full.keys_written), "keys");
  Report("  bytes written", static_cast<double>(full.new_bytes) / 1e6, "MB");

  const auto changed = static_cast<size_t>(static_cast<double>(options.keys) * options.changed_percent / 100);
  std::string text;
  uint64_t position = static_cast<uint64_t>(events);
  for (size_t i = 0; i < changed; ++i) {
    const size_t key = i * (options.keys / std::max<size_t>(changed, 1));
    EventText(key, options.events_per_key, 1717200000000 + static_cast<int64_t>(position), &text);
    e.matcher->Add(text, ++position);
  }
  e.matcher->Sync();
  started = Clock::now();
  state::CheckpointMeta incremental = Checkpoint(e, store.get(), position);
  Report("checkpoint, changed keys only", Seconds(started), "s");
  Report("  keys written", static_cast<double>(incremental.keys_written), "keys");
  Report("  bytes written", static_cast<double>(incremental.new_bytes) / 1e6, "MB");
  Report("  checkpoint size", static_cast<double>(incremental.bytes) / 1e6, "MB");
  store.reset();
  e.matcher.reset();

  started = Clock::now();
  Engine restored(options, true);
  auto reopened = OpenStore((fs::path(options.dir) / "state").string());
  auto candidates = reopened->Candidates();
  if (candidates.empty() || !candidates[0].meta.ok()) return 5;
  auto reader = reopened->OpenReader(candidates[0].id);
  if (!reader.ok()) return 5;
  const Status s = restored.matcher->Restore(candidates[0].meta->engine_progress,
                                             [&reader](const auto& visit) { return (*reader)->Scan(visit); });
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 5;
  }
  if (!reopened->Adopt(candidates[0].id).ok()) return 5;
  Report("recovery (restore newest checkpoint)", Seconds(started), "s");
  Report("  keys restored", static_cast<double>(restored.matcher->Observe().active_keys), "keys");
  fs::remove_all(options.dir);
  return 0;
}
