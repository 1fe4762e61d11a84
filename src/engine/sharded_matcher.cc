#include "engine/sharded_matcher.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <latch>

#include "common/time_util.h"
#include "engine/bounded_queue.h"
#include "nfa/event_key.h"

namespace vigil::engine {
namespace {

// Connects a worker's Matcher to the sinks. Late events and unusable keys are the input
// thread's to report; a threaded worker's Matcher never sees a late event (the input thread
// kept it back) and sees unusable keys only for events another of its patterns needed.
class MatcherSink : public nfa::MatchSink {
 public:
  MatcherSink(WorkerSink* matches, InputSink* input) : matches_(matches), input_(input) {}
  void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override {
    matches_->OnMatch(nfa, key_json, match);
  }
  void OnLate(const nfa::Event& event, int64_t watermark_ms) override {
    if (input_) input_->OnLate(event, watermark_ms);
  }
  void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) override {
    if (input_) input_->OnRejected(event, nfa, reason);
  }

 private:
  WorkerSink* matches_;
  InputSink* input_;  // null for a threaded worker
};

// A prefetching AddBatch works on this many events at once (see Matcher::AddBatch).
constexpr size_t kMatchBatch = 32;
constexpr size_t kArenaBytesPerEvent = 256;

}  // namespace

size_t AvailableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

struct ShardedMatcher::Block {
  explicit Block(size_t capacity) : events(capacity) { kept.reserve(capacity); }
  std::vector<nfa::Event> events;
  std::vector<nfa::Event*> kept;  // events[0..n), as AddBatch takes them
  std::string arena;              // the events' texts; never grows while it holds any
  int64_t watermark_ms = INT64_MIN;
  int64_t entered_steady_ns = 0;
  std::function<void(Worker&)> task;  // a barrier's work, after the events
  bool stop = false;
};

struct ShardedMatcher::Worker {
  Worker(size_t blocks, WorkerSink* matches, InputSink* input)
      : sink(matches, input), inbox(blocks), free_blocks(blocks) {}
  MatcherSink sink;
  std::unique_ptr<nfa::Matcher> matcher;
  WorkerSink* matches = nullptr;
  // Threaded only.
  BoundedQueue<Block*> inbox;
  BoundedQueue<Block*> free_blocks;
  std::vector<std::unique_ptr<Block>> blocks;
  Block* filling = nullptr;               // input thread's
  int64_t sent_watermark_ms = INT64_MIN;  // input thread's
  uint64_t events = 0;   // the matching thread's; read in barriers
  uint64_t busy_ns = 0;  // the matching thread's; read in barriers
  std::thread thread;
};

ShardedMatcher::ShardedMatcher(std::vector<std::shared_ptr<const nfa::Nfa>> patterns,
                               EngineOptions options, InputSink* input_sink,
                               std::vector<WorkerSink*> worker_sinks)
    : options_(options), input_sink_(input_sink), patterns_(std::move(patterns)) {
  const size_t n = options_.workers;
  for (size_t i = 0; i < n; ++i) {
    auto worker = std::make_unique<Worker>(options_.blocks_per_worker, worker_sinks[i],
                                           n == 1 ? input_sink : nullptr);
    worker->matches = worker_sinks[i];
    nfa::MatcherOptions matcher_options = options_.matcher;
    matcher_options.shard = static_cast<uint32_t>(i);
    matcher_options.shards = static_cast<uint32_t>(n);
    worker->matcher = std::make_unique<nfa::Matcher>(patterns_, matcher_options, &worker->sink);
    workers_.push_back(std::move(worker));
  }
  if (!threaded()) return;
  RebuildKeyGroups();
  for (auto& worker : workers_) {
    for (size_t b = 0; b < options_.blocks_per_worker; ++b) {
      worker->blocks.push_back(std::make_unique<Block>(options_.events_per_block));
      worker->free_blocks.Push(worker->blocks.back().get());
    }
    worker->thread = std::thread([this, w = worker.get()] { RunWorker(*w); });
  }
}

ShardedMatcher::~ShardedMatcher() {
  if (!threaded()) return;
  for (auto& worker : workers_) {
    Block& block = Filling(*worker);
    block.stop = true;
    Send(*worker);
  }
  for (auto& worker : workers_) worker->thread.join();
}

void ShardedMatcher::RunWorker(Worker& worker) {
  while (true) {
    Block* block = worker.inbox.Pop();
    const auto started = std::chrono::steady_clock::now();
    worker.matches->BeginBlock(block->entered_steady_ns);
    const std::span<nfa::Event* const> events(block->kept);
    for (size_t i = 0; i < events.size(); i += kMatchBatch) {
      worker.matcher->AddBatch(events.subspan(i, std::min(kMatchBatch, events.size() - i)));
    }
    worker.matcher->AdvanceWatermark(block->watermark_ms);
    worker.events += events.size();
    if (block->task) {
      block->task(worker);
      block->task = nullptr;
    }
    worker.busy_ns += static_cast<uint64_t>((std::chrono::steady_clock::now() - started).count());
    const bool stop = block->stop;
    block->stop = false;
    block->kept.clear();
    block->arena.clear();
    worker.free_blocks.Push(block);
    if (stop) return;
  }
}

void ShardedMatcher::RebuildKeyGroups() {
  key_groups_.clear();
  for (const auto& nfa : patterns_) {
    const int slot = nfa->pattern().key_slot;
    auto group = std::find_if(key_groups_.begin(), key_groups_.end(),
                              [slot](const KeyGroup& g) { return g.key_slot == slot; });
    if (group == key_groups_.end()) group = key_groups_.insert(key_groups_.end(), {slot, {}});
    group->patterns.push_back(nfa.get());
  }
}

ShardedMatcher::Block& ShardedMatcher::Filling(Worker& worker) {
  if (!worker.filling) {
    worker.filling = worker.free_blocks.Pop();  // waits while the worker is behind
    const size_t arena_bytes = options_.events_per_block * kArenaBytesPerEvent;
    if (worker.filling->arena.capacity() < arena_bytes) worker.filling->arena.reserve(arena_bytes);
    worker.filling->entered_steady_ns = 0;
  }
  return *worker.filling;
}

void ShardedMatcher::Send(Worker& worker) {
  Block& block = Filling(worker);
  block.watermark_ms = watermark_ms_;
  worker.sent_watermark_ms = watermark_ms_;
  worker.filling = nullptr;
  worker.inbox.Push(&block);
}

void ShardedMatcher::AddBatch(std::span<nfa::Event* const> events, int64_t entered_steady_ns) {
  if (!threaded()) {
    Worker& worker = *workers_[0];
    const auto started = std::chrono::steady_clock::now();
    worker.matches->BeginBlock(entered_steady_ns);
    worker.matcher->AddBatch(events);
    worker.events += events.size();
    worker.busy_ns += static_cast<uint64_t>((std::chrono::steady_clock::now() - started).count());
    return;
  }
  for (nfa::Event* event : events) Route(event, entered_steady_ns);
}

// One Matcher's Accept() decisions, made here for all workers, then the copy to each owner.
void ShardedMatcher::Route(nfa::Event* event, int64_t entered_steady_ns) {
  ++events_;
  if (event->time_ms() < watermark_ms_) {
    ++late_events_;
    input_sink_->OnLate(*event, watermark_ms_);
    return;
  }
  targets_.clear();
  const uint32_t shards = static_cast<uint32_t>(workers_.size());
  for (const KeyGroup& group : key_groups_) {
    const nfa::Value key = nfa::KeyOfSlot(group.key_slot, *event);
    if (!nfa::EncodeKey(key, &key_buffer_)) {
      for (const nfa::Nfa* nfa : group.patterns) {
        input_sink_->OnRejected(*event, *nfa, nfa::KeyProblem(nfa->pattern(), key));
      }
      continue;
    }
    const uint32_t shard = nfa::ShardOf(nfa::HashKey(key_buffer_), shards);
    if (std::find(targets_.begin(), targets_.end(), shard) == targets_.end()) targets_.push_back(shard);
  }
  for (const uint32_t shard : targets_) {
    Worker& worker = *workers_[shard];
    const std::string_view raw = event->raw();
    Block* block = &Filling(worker);
    if (block->kept.size() == block->events.size() ||
        (!block->kept.empty() && block->arena.size() + raw.size() > block->arena.capacity())) {
      Send(worker);
      block = &Filling(worker);
    }
    if (block->kept.empty() && raw.size() > block->arena.capacity()) block->arena.reserve(raw.size());
    const size_t offset = block->arena.size();
    block->arena.append(raw);
    nfa::Event& copy = block->events[block->kept.size()];
    copy.CopyFrom(*event, std::string_view(block->arena).substr(offset, raw.size()));
    block->kept.push_back(&copy);
    if (block->entered_steady_ns == 0) block->entered_steady_ns = entered_steady_ns;
  }
  max_time_ms_ = std::max(max_time_ms_, event->time_ms());
  watermark_ms_ = std::max(
      watermark_ms_, SaturatingSub(max_time_ms_, options_.matcher.max_out_of_orderness_ms));
}

void ShardedMatcher::Flush() {
  if (!threaded()) return;
  for (auto& worker : workers_) {
    if (worker->filling || worker->sent_watermark_ms < watermark_ms_) Send(*worker);
  }
}

void ShardedMatcher::Barrier(const std::function<void(Worker&)>& task) {
  if (!threaded()) {
    workers_[0]->matches->BeginBlock(0);  // what matches now owes nothing to recent input
    task(*workers_[0]);
    return;
  }
  Flush();
  std::latch done(static_cast<std::ptrdiff_t>(workers_.size()));
  for (auto& worker : workers_) {
    Filling(*worker).task = [&task, &done](Worker& w) {
      task(w);
      done.count_down();
    };
    Send(*worker);
  }
  done.wait();
}

void ShardedMatcher::Sync() {
  Barrier([](Worker&) {});
}

void ShardedMatcher::AdvanceWatermark(int64_t watermark_ms) {
  if (!threaded()) {
    workers_[0]->matches->BeginBlock(0);
    workers_[0]->matcher->AdvanceWatermark(watermark_ms);
    return;
  }
  watermark_ms_ = std::max(watermark_ms_, watermark_ms);
  Flush();
}

void ShardedMatcher::Finish() {
  Barrier([](Worker& w) { w.matcher->Finish(); });
  watermark_ms_ = INT64_MAX;
}

int64_t ShardedMatcher::watermark_ms() const {
  return threaded() ? watermark_ms_ : workers_[0]->matcher->watermark_ms();
}

int64_t ShardedMatcher::max_event_time_ms() const {
  return threaded() ? max_time_ms_ : workers_[0]->matcher->max_event_time_ms();
}

Status ShardedMatcher::AddPattern(std::shared_ptr<const nfa::Nfa> nfa) {
  const std::string& id = nfa->pattern().id;
  if (std::any_of(patterns_.begin(), patterns_.end(),
                  [&id](const auto& p) { return p->pattern().id == id; })) {
    return Status::AlreadyExists("pattern '" + id + "' already exists");
  }
  std::vector<Status> results(workers_.size());
  Barrier([&](Worker& w) { results[w.matcher->options().shard] = w.matcher->AddPattern(nfa); });
  for (const Status& s : results) {
    if (!s.ok()) return s;
  }
  patterns_.push_back(std::move(nfa));
  RebuildKeyGroups();
  return Status::Ok();
}

Result<size_t> ShardedMatcher::ReplacePattern(std::shared_ptr<const nfa::Nfa> nfa) {
  const std::string& id = nfa->pattern().id;
  auto it = std::find_if(patterns_.begin(), patterns_.end(),
                         [&id](const auto& p) { return p->pattern().id == id; });
  if (it == patterns_.end()) return Status::NotFound("pattern '" + id + "' not found");
  std::vector<Result<size_t>> results(workers_.size(), size_t{0});
  Barrier([&](Worker& w) { results[w.matcher->options().shard] = w.matcher->ReplacePattern(nfa); });
  size_t dropped = 0;
  for (const Result<size_t>& r : results) {
    if (!r.ok()) return r.status();
    dropped += *r;
  }
  *it = std::move(nfa);
  RebuildKeyGroups();
  return dropped;
}

Result<size_t> ShardedMatcher::RemovePattern(std::string_view id) {
  auto it = std::find_if(patterns_.begin(), patterns_.end(),
                         [id](const auto& p) { return p->pattern().id == id; });
  if (it == patterns_.end()) return Status::NotFound("pattern '" + std::string(id) + "' not found");
  std::vector<Result<size_t>> results(workers_.size(), size_t{0});
  Barrier([&](Worker& w) { results[w.matcher->options().shard] = w.matcher->RemovePattern(id); });
  size_t dropped = 0;
  for (const Result<size_t>& r : results) {
    if (!r.ok()) return r.status();
    dropped += *r;
  }
  patterns_.erase(it);
  RebuildKeyGroups();
  return dropped;
}

ShardedMatcher::Observation ShardedMatcher::Observe() {
  Observation out;
  out.workers.resize(workers_.size());
  if (threaded()) {
    for (size_t i = 0; i < workers_.size(); ++i) out.workers[i].queued_blocks = workers_[i]->inbox.size();
  }
  std::vector<Observation> per_worker(workers_.size());
  Barrier([&](Worker& w) {
    const nfa::Matcher& m = *w.matcher;
    const size_t i = m.options().shard;
    Observation& o = per_worker[i];
    o.totals = m.stats();
    o.active_keys = m.active_keys();
    o.stored_nodes = m.stored_nodes();
    for (const std::string& id : m.pattern_ids()) o.partial_matches[id] = m.partial_matches(id);
    out.workers[i].events = w.events;
    out.workers[i].busy_ns = w.busy_ns;
    out.workers[i].keys = o.active_keys;
  });
  for (size_t i = 0; i < workers_.size(); ++i) {
    const Observation& o = per_worker[i];
    out.totals.events += o.totals.events;
    out.totals.late_events += o.totals.late_events;
    out.totals.matches += o.totals.matches;
    out.totals.timeouts += o.totals.timeouts;
    out.totals.dropped_partial_matches += o.totals.dropped_partial_matches;
    out.active_keys += o.active_keys;
    out.stored_nodes += o.stored_nodes;
    for (const auto& [id, n] : o.partial_matches) out.partial_matches[id] += n;
  }
  if (threaded()) {
    // An event that went to several workers is one event; late ones never reached a worker.
    out.totals.events = events_;
    out.totals.late_events = late_events_;
  }
  return out;
}

}  // namespace vigil::engine
