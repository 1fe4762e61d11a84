#include "engine/sharded_matcher.h"

#include <sched.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <span>
#include <thread>

#include "common/byte_codec.h"
#include "common/time_util.h"
#include "engine/bounded_queue.h"
#include "nfa/event_key.h"
#include "nfa/event_parser.h"

namespace vigil::engine {
namespace {

// Hands a worker's matches on. Late events and unusable keys are decided where events enter
// (ShardedMatcher::Decide), so the Matcher's own reports of them are dropped: a worker's
// Matcher never sees a late event, and sees an unusable key only for an event that another
// of its patterns needed.
class MatchesOnly : public nfa::MatchSink {
 public:
  explicit MatchesOnly(WorkerSink* matches) : matches_(matches) {}
  void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override {
    matches_->OnMatch(nfa, key_json, match);
  }
  void OnLate(const nfa::Event&, int64_t) override {}
  void OnRejected(const nfa::Event&, const nfa::Nfa&, std::string_view) override {}

 private:
  WorkerSink* matches_;
};

// A prefetching AddBatch works on this many events at once (see Matcher::AddBatch).
constexpr size_t kMatchBatch = 32;
constexpr size_t kTextBytesPerEvent = 256;

// Parses stored event texts again, for the fields the patterns read now.
class Reparser {
 public:
  explicit Reparser(nfa::EventParser* parser) : parser_(parser) {}
  Result<nfa::EventRef> operator()(std::string_view text) {
    padded_.assign(text);
    padded_.append(simdjson::SIMDJSON_PADDING, '\0');
    if (Status s = parser_->Parse(std::string_view(padded_).substr(0, text.size()), padded_.size(), &scratch_);
        !s.ok()) {
      return Status::Corruption("a stored event no longer parses: " + s.message());
    }
    return scratch_.Retain();
  }

 private:
  nfa::EventParser* parser_;
  std::string padded_;
  nfa::Event scratch_;
};

EngineOptions WithDefaults(EngineOptions options) {
  // Enough chunks for every worker to have some to parse and some to match.
  if (options.chunks == 0) options.chunks = 16 * options.workers + 32;
  return options;
}

uint64_t NanosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>((std::chrono::steady_clock::now() - start).count());
}

}  // namespace

size_t AvailableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

struct ShardedMatcher::Chunk {
  Chunk(size_t capacity, size_t workers)
      : events(capacity), for_worker(workers), hashes_for_worker(workers), watermarks_for_worker(workers) {
    texts.reserve(capacity);
  }
  // Filled by the input thread.
  struct Text {
    size_t offset;
    size_t size;
    uint64_t line;
    uint32_t source;
  };
  std::string arena;  // the texts back to back, then simdjson's padding
  std::vector<Text> texts;
  std::vector<int> key_slots;  // the key fields to hash, by key group
  std::vector<std::shared_ptr<const nfa::EventFilter>> key_filters;  // KeyGroup::filter, by group
  int64_t entered_steady_ns = 0;
  // Filled by the parsing worker.
  std::vector<nfa::Event> events;                        // by text
  std::vector<std::pair<size_t, std::string>> errors;    // (text, reason), in text order
  std::vector<uint64_t> key_hashes;                      // by (text, key group)
  std::vector<uint8_t> key_usable;                       // by (text, key group)
  std::vector<uint8_t> key_wanted;  // by (text, key group): the group's filter passes the event
  std::atomic<bool> claimed{false};  // whoever sets it parses the chunk
  std::atomic<bool> parsed{false};
  // Filled by the input thread once parsed.
  std::vector<std::vector<const nfa::Event*>> for_worker;
  std::vector<std::vector<uint64_t>> hashes_for_worker;  // their key_hashes rows
  std::vector<std::vector<int64_t>> watermarks_for_worker;  // the stream's right after each
  int64_t watermark_ms = INT64_MIN;
  std::atomic<int> readers{0};

  void Reset(size_t usual_arena_bytes) {
    // A chunk that once carried a huge event does not keep its memory for ever.
    if (arena.capacity() > 4 * usual_arena_bytes) arena = std::string();
    if (arena.capacity() < usual_arena_bytes) arena.reserve(usual_arena_bytes);
    arena.clear();
    texts.clear();
    entered_steady_ns = 0;
    errors.clear();
    for (auto& events_of_worker : for_worker) events_of_worker.clear();
    for (auto& hashes_of_worker : hashes_for_worker) hashes_of_worker.clear();
    for (auto& watermarks_of_worker : watermarks_for_worker) watermarks_of_worker.clear();
    claimed.store(false, std::memory_order_relaxed);
    parsed.store(false, std::memory_order_relaxed);
  }
};

struct ShardedMatcher::FreeChunks : BoundedQueue<Chunk*> {
  using BoundedQueue::BoundedQueue;
};

struct ShardedMatcher::Parsing {
  Parsing(nfa::FieldSchema* schema, const std::string& time_field)
      : parser(schema, time_field), reparse(&parser) {}
  nfa::EventParser parser;
  Reparser reparse;  // for states restored or read back from a spill, on the parser's thread
  std::string key_buffer;
  uint64_t busy_ns = 0;  // the parsing thread's; read in barriers
};

struct ShardedMatcher::Worker {
  struct Message {
    enum class Kind { kParse, kMatch, kTask, kWriteAhead, kMark, kStop } kind;
    Chunk* chunk = nullptr;
    const std::function<void(Worker&)>* task = nullptr;
    std::latch* done = nullptr;
    nfa::StateWriter* writer = nullptr;  // kWriteAhead
    uint64_t mark = 0;                   // kMark
  };
  Worker(size_t index, size_t inbox_capacity, WorkerSink* matches)
      : index(index), matches(matches), sink(matches), inbox(inbox_capacity) {}
  size_t index;
  WorkerSink* matches;
  MatchesOnly sink;
  std::unique_ptr<nfa::Matcher> matcher;
  // Threaded only.
  std::unique_ptr<Parsing> parsing;
  BoundedQueue<Message> inbox;
  std::thread thread;
  uint64_t events = 0;   // the worker's own; read in barriers
  uint64_t busy_ns = 0;  // the worker's own; read in barriers
  // Writing ahead (WriteAhead) until the next checkpoint: where to, and whether changed keys
  // may be left. The worker's own.
  nfa::StateWriter* ahead = nullptr;
  bool ahead_left = false;
  // The matcher's PatternCosts after each chunk, for readers on other threads.
  mutable std::mutex costs_mutex;
  std::vector<nfa::Matcher::PatternCost> costs;
};

ShardedMatcher::ShardedMatcher(std::vector<std::shared_ptr<const nfa::Nfa>> patterns,
                               nfa::FieldSchema* schema, EngineOptions options,
                               InputSink* input_sink, std::vector<WorkerSink*> worker_sinks)
    : options_(WithDefaults(std::move(options))),
      schema_(schema),
      input_sink_(input_sink),
      free_chunks_(std::make_unique<FreeChunks>(options_.chunks)),
      input_parsing_(std::make_unique<Parsing>(schema, options_.time_field)),
      patterns_(std::move(patterns)) {
  const size_t n = options_.workers;
  for (size_t i = 0; i < options_.chunks; ++i) {
    all_chunks_.push_back(std::make_unique<Chunk>(options_.events_per_chunk, n));
    free_chunks_->Push(all_chunks_.back().get());
  }
  for (size_t i = 0; i < n; ++i) {
    // Each chunk can wait in an inbox at most twice (to be parsed, to be matched), plus one
    // barrier, one mark, one start of writing ahead and the stop: pushing never waits.
    auto worker = std::make_unique<Worker>(i, 2 * options_.chunks + 4, worker_sinks[i]);
    nfa::MatcherOptions matcher_options = options_.matcher;
    matcher_options.shard = static_cast<uint32_t>(i);
    matcher_options.shards = static_cast<uint32_t>(n);
    // A worker sees only its events: with several sources the watermark it would derive from
    // them could run ahead of the sources' combined one, so it follows the engine's alone.
    if (options_.several_sources) matcher_options.max_out_of_orderness_ms = INT64_MAX;
    if (n > 1) worker->parsing = std::make_unique<Parsing>(schema_, options_.time_field);
    // The worker's events are parsed on its thread, by its parser (the input thread's with one).
    Parsing& parsing = n > 1 ? *worker->parsing : *input_parsing_;
    matcher_options.restore_events = std::ref(parsing.reparse);
    if (!options_.spills.empty()) matcher_options.spill = options_.spills[i];
    // Budgets and limits over all keys are the engine's: each worker keeps its share.
    if (options_.matcher.memory_budget_bytes > 0) {
      matcher_options.memory_budget_bytes = std::max<uint64_t>(1, options_.matcher.memory_budget_bytes / n);
    }
    if (options_.matcher.max_partial_matches_per_pattern > 0) {
      matcher_options.max_partial_matches_per_pattern =
          std::max<size_t>(1, options_.matcher.max_partial_matches_per_pattern / n);
    }
    worker->matcher = std::make_unique<nfa::Matcher>(patterns_, matcher_options, &worker->sink);
    workers_.push_back(std::move(worker));
  }
  RebuildKeyGroups();
  if (!threaded()) return;
  for (auto& worker : workers_) {
    worker->thread = std::thread([this, w = worker.get()] { RunWorker(*w); });
  }
}

ShardedMatcher::~ShardedMatcher() {
  if (!threaded()) return;
  for (auto& worker : workers_) worker->inbox.Push({Worker::Message::Kind::kStop});
  for (auto& worker : workers_) worker->thread.join();
}

void ShardedMatcher::RunWorker(Worker& worker) {
  using Kind = Worker::Message::Kind;
  while (true) {
    // Time that would go to waiting for input goes to writing ahead, a few keys at a time, and
    // at most half of it: flat out, both workers took both CPUs for a quarter of a second
    // before each checkpoint, and the broker's and the input thread's turns with them.
    while (worker.ahead_left && worker.inbox.size() == 0) {
      const auto started = std::chrono::steady_clock::now();
      WriteSomeAhead(worker, kAheadKeysWhileIdle);
      worker.inbox.AwaitItem(std::chrono::steady_clock::now() - started);
    }
    const Worker::Message message = worker.inbox.Pop();
    switch (message.kind) {
      case Kind::kParse:
        // Already claimed: the input thread parsed it. The chunk cannot have been reused
        // since: this worker's own request to match it comes after this one.
        if (!message.chunk->claimed.exchange(true, std::memory_order_acquire)) {
          Parse(*worker.parsing, *message.chunk);
          message.chunk->parsed.store(true, std::memory_order_release);
          message.chunk->parsed.notify_one();
        }
        break;
      case Kind::kMatch:
        Match(worker, *message.chunk);
        if (message.chunk->readers.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          Release(message.chunk);
        }
        break;
      case Kind::kTask:
        (*message.task)(worker);
        message.done->count_down();
        break;
      case Kind::kWriteAhead:
        worker.ahead = message.writer;
        worker.ahead_left = true;
        break;
      case Kind::kMark:
        worker.matches->OnMark(message.mark);
        break;
      case Kind::kStop:
        // Its retained events go back to this thread's pool and counts, not the caller's.
        worker.matcher.reset();
        return;
    }
  }
}

void ShardedMatcher::RebuildKeyGroups() {
  key_groups_.clear();
  pattern_groups_.clear();
  for (const auto& nfa : patterns_) {
    const int slot = nfa->pattern().key_slot;
    auto group = std::find_if(key_groups_.begin(), key_groups_.end(),
                              [slot](const KeyGroup& g) { return g.key_slot == slot; });
    if (group == key_groups_.end()) group = key_groups_.insert(key_groups_.end(), {slot, nullptr});
    pattern_groups_.push_back(static_cast<size_t>(group - key_groups_.begin()));
  }
  for (size_t g = 0; g < key_groups_.size(); ++g) {
    // The union of the group's filters, if each of its patterns filters on the same field.
    nfa::EventFilter united;
    bool filtered = true;
    for (size_t p = 0; p < patterns_.size(); ++p) {
      if (pattern_groups_[p] != g) continue;
      const std::optional<nfa::EventFilter>& filter = patterns_[p]->event_filter();
      filtered = filter && (united.slot < 0 || united.slot == filter->slot);
      if (!filtered) break;
      united.slot = filter->slot;
      united.Allow(filter->values);
    }
    if (!filtered) continue;
    key_groups_[g].filter = std::make_shared<const nfa::EventFilter>(std::move(united));
  }
}

void ShardedMatcher::Add(std::string_view text, uint64_t line, int64_t entered_steady_ns, uint32_t source) {
  if (filling_ && filling_->texts.size() == options_.events_per_chunk) Dispatch();
  Chunk& chunk = Filling();
  chunk.texts.push_back({chunk.arena.size(), text.size(), line, source});
  chunk.arena.append(text);
  if (chunk.entered_steady_ns == 0) chunk.entered_steady_ns = entered_steady_ns;
}

ShardedMatcher::Chunk& ShardedMatcher::Filling() {
  if (!filling_) {
    filling_ = free_chunks_->Pop();  // waits while every chunk is in use: back-pressure
    filling_->Reset(UsualArenaBytes());
  }
  return *filling_;
}

size_t ShardedMatcher::room_now() const {
  const size_t in_filling = filling_ ? options_.events_per_chunk - filling_->texts.size() : 0;
  return free_chunks_->size() * options_.events_per_chunk + in_filling;
}

size_t ShardedMatcher::UsualArenaBytes() const {
  return options_.events_per_chunk * kTextBytesPerEvent + simdjson::SIMDJSON_PADDING;
}

void ShardedMatcher::Dispatch() {
  Chunk* chunk = filling_;
  filling_ = nullptr;
  chunk->arena.append(simdjson::SIMDJSON_PADDING, '\0');
  chunk->key_slots.clear();
  chunk->key_filters.clear();
  for (const KeyGroup& group : key_groups_) {
    chunk->key_slots.push_back(group.key_slot);
    chunk->key_filters.push_back(group.filter);
  }
  if (!threaded()) {
    Parse(*input_parsing_, *chunk);
    Decide(*chunk);
    HandOut(chunk);
    return;
  }
  parsing_.push_back(chunk);
  workers_[next_parser_]->inbox.Push({Worker::Message::Kind::kParse, chunk});
  next_parser_ = (next_parser_ + 1) % workers_.size();
  // Several chunks per worker in parsing, so that workers always have some queued while the
  // input thread decides; and always one left for filling.
  while (parsing_.size() > std::min(4 * workers_.size(), options_.chunks - 1)) DecideOldest();
}

void ShardedMatcher::Parse(Parsing& parsing, Chunk& chunk) {
  const auto started = std::chrono::steady_clock::now();
  const size_t groups = chunk.key_slots.size();
  chunk.key_hashes.resize(chunk.texts.size() * groups);
  chunk.key_usable.resize(chunk.texts.size() * groups);
  chunk.key_wanted.resize(chunk.texts.size() * groups);
  for (size_t i = 0; i < chunk.texts.size(); ++i) {
    const Chunk::Text& text = chunk.texts[i];
    nfa::Event& event = chunk.events[i];
    Status parsed = parsing.parser.Parse(std::string_view(chunk.arena).substr(text.offset, text.size),
                                         chunk.arena.size() - text.offset, &event);
    if (!parsed.ok()) {
      chunk.errors.emplace_back(i, parsed.message());
      continue;
    }
    event.set_line(text.line);
    for (size_t g = 0; g < groups; ++g) {
      const bool usable = nfa::EncodeKey(nfa::KeyOfSlot(chunk.key_slots[g], event), &parsing.key_buffer);
      chunk.key_usable[i * groups + g] = usable;
      chunk.key_hashes[i * groups + g] = usable ? nfa::HashKey(parsing.key_buffer) : 0;
      chunk.key_wanted[i * groups + g] = !chunk.key_filters[g] || chunk.key_filters[g]->Passes(event);
    }
  }
  parsing.busy_ns += NanosSince(started);
}

void ShardedMatcher::DecideOldest() {
  Chunk* chunk = parsing_.front();
  parsing_.pop_front();
  if (!chunk->claimed.exchange(true, std::memory_order_acquire)) {
    // Its worker has not started on it (busy matching): parsing it here beats waiting.
    Parse(*input_parsing_, *chunk);
  } else {
    chunk->parsed.wait(false, std::memory_order_acquire);
  }
  Decide(*chunk);
  HandOut(chunk);
}

// The decisions one Matcher's Accept() makes, made here once for every worker.
void ShardedMatcher::Decide(Chunk& chunk) {
  const size_t groups = key_groups_.size();
  const uint32_t shards = static_cast<uint32_t>(workers_.size());
  size_t next_error = 0;
  for (size_t i = 0; i < chunk.texts.size(); ++i) {
    const Chunk::Text& text = chunk.texts[i];
    if (next_error < chunk.errors.size() && chunk.errors[next_error].first == i) {
      input_sink_->OnMalformed(text.line, std::string_view(chunk.arena).substr(text.offset, text.size),
                               chunk.errors[next_error].second);
      ++next_error;
      continue;
    }
    const nfa::Event& event = chunk.events[i];
    ++events_;
    if (event.time_ms() < watermark_ms_) {
      ++late_events_;
      input_sink_->OnLate(event, watermark_ms_);
      continue;
    }
    targets_.clear();
    bool any_unusable = false;
    for (size_t g = 0; g < groups; ++g) {
      if (!chunk.key_usable[i * groups + g]) {
        any_unusable = true;
        continue;
      }
      // No pattern of this key field can use the event: its owner need not see it.
      if (!chunk.key_wanted[i * groups + g]) continue;
      const uint32_t shard = nfa::ShardOf(chunk.key_hashes[i * groups + g], shards);
      if (std::find(targets_.begin(), targets_.end(), shard) == targets_.end()) targets_.push_back(shard);
    }
    if (any_unusable) {
      for (size_t p = 0; p < patterns_.size(); ++p) {  // in pattern order, as one Matcher reports
        const KeyGroup& group = key_groups_[pattern_groups_[p]];
        if (chunk.key_usable[i * groups + pattern_groups_[p]]) continue;
        const nfa::Pattern& pattern = patterns_[p]->pattern();
        input_sink_->OnRejected(event, *patterns_[p],
                                nfa::KeyProblem(pattern, nfa::KeyOfSlot(group.key_slot, event)));
      }
    }
    const auto row = chunk.key_hashes.begin() + static_cast<std::ptrdiff_t>(i * groups);
    for (const uint32_t shard : targets_) {
      chunk.for_worker[shard].push_back(&event);
      chunk.hashes_for_worker[shard].insert(chunk.hashes_for_worker[shard].end(), row,
                                            row + static_cast<std::ptrdiff_t>(groups));
    }
    max_time_ms_ = std::max(max_time_ms_, event.time_ms());
    if (text.source >= sources_.size()) sources_.resize(text.source + 1);
    Source& source = sources_[text.source];
    source.max_time_ms = std::max(source.max_time_ms, event.time_ms());
    source.active = true;
    source.idle = false;
    watermark_ms_ = std::max(watermark_ms_, SourcesWatermark());
    for (const uint32_t shard : targets_) chunk.watermarks_for_worker[shard].push_back(watermark_ms_);
  }
  chunk.watermark_ms = watermark_ms_;
}

int64_t ShardedMatcher::SourcesWatermark() const {
  int64_t smallest_holding = INT64_MAX;
  int64_t largest = INT64_MIN;
  for (const Source& s : sources_) {
    if (s.active && !s.idle) smallest_holding = std::min(smallest_holding, s.max_time_ms);
    largest = std::max(largest, s.max_time_ms);
  }
  const int64_t time = smallest_holding != INT64_MAX ? smallest_holding : largest;
  return time == INT64_MIN ? INT64_MIN : SaturatingSub(time, options_.matcher.max_out_of_orderness_ms);
}

int64_t ShardedMatcher::source_watermark_ms(uint32_t source) const {
  if (source >= sources_.size() || sources_[source].max_time_ms == INT64_MIN) return INT64_MIN;
  return SaturatingSub(sources_[source].max_time_ms, options_.matcher.max_out_of_orderness_ms);
}

void ShardedMatcher::SetSourceIdle(uint32_t source, bool idle) {
  Flush();  // the events added before are decided with the sources as they were
  if (source >= sources_.size()) sources_.resize(source + 1);
  sources_[source].active = true;
  sources_[source].idle = idle;
  const int64_t watermark = SourcesWatermark();
  if (watermark > watermark_ms_) {
    watermark_ms_ = watermark;
    Flush();
  }
}

void ShardedMatcher::HandOut(Chunk* chunk) {
  handed_out_watermark_ms_ = chunk->watermark_ms;
  if (!threaded()) {
    Match(*workers_[0], *chunk);
    Release(chunk);
    return;
  }
  chunk->readers.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  for (auto& worker : workers_) worker->inbox.Push({Worker::Message::Kind::kMatch, chunk});
}

void ShardedMatcher::Match(Worker& worker, Chunk& chunk) {
  const auto started = std::chrono::steady_clock::now();
  worker.matches->BeginBlock(chunk.entered_steady_ns);
  const std::span<const nfa::Event* const> events(chunk.for_worker[worker.index]);
  const std::span<const uint64_t> hashes(chunk.hashes_for_worker[worker.index]);
  const std::span<const int64_t> watermarks(chunk.watermarks_for_worker[worker.index]);
  const size_t groups = chunk.key_slots.size();
  for (size_t i = 0; i < events.size(); i += kMatchBatch) {
    const size_t n = std::min(kMatchBatch, events.size() - i);
    worker.matcher->AddBatch(events.subspan(i, n), {&chunk.key_slots, hashes.subspan(i * groups, n * groups)},
                             watermarks.subspan(i, n));
  }
  worker.matcher->AdvanceWatermark(chunk.watermark_ms);
  worker.events += events.size();
  if (worker.ahead) {
    worker.ahead_left = true;
    // Bounded by the chunk's events, so writing ahead slows matching by a share, not a pause;
    // and none while more input waits: a worker behind would only fall further behind, and
    // its batch would fill with keys that change again before the barrier.
    const bool more_waits = threaded() && worker.inbox.size() > 1;
    if (!more_waits) WriteSomeAhead(worker, (events.size() + kEventsPerKeyAhead - 1) / kEventsPerKeyAhead);
  }
  worker.busy_ns += NanosSince(started);
  PublishCosts(worker);
}

void ShardedMatcher::WriteSomeAhead(Worker& worker, size_t max_keys) {
  if (max_keys == 0) return;
  const Result<size_t> left = worker.matcher->WriteChangesAhead(worker.ahead, max_keys);
  // An error (a spilled key that does not read back) is the checkpoint's to report.
  worker.ahead_left = left.ok() && *left > 0;
}

void ShardedMatcher::WriteAhead(std::span<nfa::StateWriter* const> writers) {
  if (writing_ahead_) return;
  writing_ahead_ = true;
  for (auto& worker : workers_) {
    if (threaded()) {
      worker->inbox.Push({.kind = Worker::Message::Kind::kWriteAhead, .writer = writers[worker->index]});
    } else {
      worker->ahead = writers[worker->index];
      worker->ahead_left = true;
    }
  }
}

void ShardedMatcher::StopWritingAhead() {
  if (!writing_ahead_) return;
  Barrier(StopAhead);
  writing_ahead_ = false;
}

void ShardedMatcher::StopAhead(Worker& worker) {
  worker.ahead = nullptr;
  worker.ahead_left = false;
}

void ShardedMatcher::PublishCosts(Worker& worker) {
  const std::lock_guard lock(worker.costs_mutex);
  worker.matcher->CollectCosts(&worker.costs);
}

std::vector<nfa::Matcher::PatternCost> ShardedMatcher::PatternCosts() const {
  std::vector<nfa::Matcher::PatternCost> sum;
  for (const auto& worker : workers_) {
    const std::lock_guard lock(worker->costs_mutex);
    for (const nfa::Matcher::PatternCost& cost : worker->costs) {
      auto it = std::find_if(sum.begin(), sum.end(), [&cost](const auto& c) { return c.nfa == cost.nfa; });
      if (it == sum.end()) it = sum.insert(sum.end(), {cost.nfa, 0, 0, 0});
      it->events += cost.events;
      it->samples += cost.samples;
      it->sampled_ns += cost.sampled_ns;
    }
  }
  return sum;
}

void ShardedMatcher::Release(Chunk* chunk) { free_chunks_->Push(chunk); }

void ShardedMatcher::Flush() {
  if (filling_ && !filling_->texts.empty()) Dispatch();
  while (!parsing_.empty()) DecideOldest();
  if (handed_out_watermark_ms_ < watermark_ms_) {
    // Only the watermark moved: an empty chunk carries it to every worker.
    Chunk* chunk = &Filling();
    filling_ = nullptr;
    chunk->watermark_ms = watermark_ms_;
    HandOut(chunk);
  }
}

void ShardedMatcher::Barrier(const std::function<void(Worker&)>& task) {
  Flush();
  if (!threaded()) {
    workers_[0]->matches->BeginBlock(0);
    task(*workers_[0]);
    return;
  }
  std::latch done(static_cast<std::ptrdiff_t>(workers_.size()));
  for (auto& worker : workers_) {
    worker->inbox.Push({Worker::Message::Kind::kTask, nullptr, &task, &done});
  }
  done.wait();
}

void ShardedMatcher::Sync() {
  Barrier([](Worker&) {});
}

void ShardedMatcher::Mark(uint64_t mark) {
  Flush();
  for (auto& worker : workers_) {
    if (threaded()) {
      worker->inbox.Push({.kind = Worker::Message::Kind::kMark, .mark = mark});
    } else {
      worker->matches->OnMark(mark);
    }
  }
}

void ShardedMatcher::AdvanceWatermark(int64_t watermark_ms) {
  if (watermark_ms <= watermark_ms_) return;
  Flush();  // the events added before are decided under the old watermark
  watermark_ms_ = watermark_ms;
  Flush();
}

void ShardedMatcher::Finish() {
  writing_ahead_ = false;
  Barrier([](Worker& w) {
    StopAhead(w);
    w.matcher->Finish();
  });
  watermark_ms_ = INT64_MAX;
  handed_out_watermark_ms_ = INT64_MAX;
}

std::vector<std::shared_ptr<const nfa::Nfa>>::iterator ShardedMatcher::FindPattern(std::string_view id) {
  return std::find_if(patterns_.begin(), patterns_.end(),
                      [id](const auto& p) { return p->pattern().id == id; });
}

template <typename T>
std::vector<T> ShardedMatcher::ChangeEveryWorker(const std::function<T(nfa::Matcher&)>& change,
                                                 T initial) {
  std::vector<T> results(workers_.size(), initial);
  Barrier([&](Worker& w) {
    results[w.index] = change(*w.matcher);
    // A new or replaced pattern may read fields the parsers do not extract yet.
    if (w.parsing) w.parsing->parser.Refresh();
    PublishCosts(w);  // a removed pattern's costs must not linger until the next chunk
  });
  input_parsing_->parser.Refresh();
  return results;
}

namespace {

// The partial matches the workers dropped, or the first worker's error.
Result<size_t> TotalDropped(const std::vector<Result<size_t>>& results) {
  size_t dropped = 0;
  for (const Result<size_t>& r : results) {
    if (!r.ok()) return r.status();
    dropped += *r;
  }
  return dropped;
}

}  // namespace

Status ShardedMatcher::AddPattern(std::shared_ptr<const nfa::Nfa> nfa) {
  const std::string& id = nfa->pattern().id;
  if (FindPattern(id) != patterns_.end()) {
    return Status::AlreadyExists("pattern '" + id + "' already exists");
  }
  const std::vector<Status> results = ChangeEveryWorker<Status>(
      [&nfa](nfa::Matcher& m) { return m.AddPattern(nfa); }, Status::Ok());
  for (const Status& s : results) {
    if (!s.ok()) return s;
  }
  patterns_.push_back(std::move(nfa));
  RebuildKeyGroups();
  return Status::Ok();
}

Result<size_t> ShardedMatcher::ReplacePattern(std::shared_ptr<const nfa::Nfa> nfa) {
  const std::string& id = nfa->pattern().id;
  const auto it = FindPattern(id);
  if (it == patterns_.end()) return Status::NotFound("pattern '" + id + "' not found");
  const Result<size_t> dropped = TotalDropped(ChangeEveryWorker<Result<size_t>>(
      [&nfa](nfa::Matcher& m) { return m.ReplacePattern(nfa); }, size_t{0}));
  if (!dropped.ok()) return dropped;
  *it = std::move(nfa);
  RebuildKeyGroups();
  return dropped;
}

Result<size_t> ShardedMatcher::RemovePattern(std::string_view id) {
  const auto it = FindPattern(id);
  if (it == patterns_.end()) return Status::NotFound("pattern '" + std::string(id) + "' not found");
  const Result<size_t> dropped = TotalDropped(ChangeEveryWorker<Result<size_t>>(
      [id](nfa::Matcher& m) { return m.RemovePattern(id); }, size_t{0}));
  if (!dropped.ok()) return dropped;
  patterns_.erase(it);
  RebuildKeyGroups();
  return dropped;
}

ShardedMatcher::Observation ShardedMatcher::Observe() {
  Observation out;
  out.workers.resize(workers_.size());
  if (threaded()) {
    for (size_t i = 0; i < workers_.size(); ++i) out.workers[i].queued = workers_[i]->inbox.size();
  }
  std::vector<Observation> per_worker(workers_.size());
  Barrier([&](Worker& w) {
    const nfa::Matcher& m = *w.matcher;
    Observation& o = per_worker[w.index];
    o.totals = m.stats();
    o.active_keys = m.active_keys();
    o.stored_nodes = m.stored_nodes();
    o.memory_bytes = m.memory_bytes();
    o.spilled_keys = m.spilled_keys();
    for (const std::string& id : m.pattern_ids()) o.partial_matches[id] = m.partial_matches(id);
    out.workers[w.index].events = w.events;
    // With one worker, the input thread's parsing is that worker's.
    const Parsing* parsing = w.parsing ? w.parsing.get() : threaded() ? nullptr : input_parsing_.get();
    out.workers[w.index].busy_ns = w.busy_ns + (parsing ? parsing->busy_ns : 0);
    out.workers[w.index].keys = o.active_keys;
  });
  for (const Observation& o : per_worker) {
    out.totals.matches += o.totals.matches;
    out.totals.timeouts += o.totals.timeouts;
    out.totals.dropped_partial_matches += o.totals.dropped_partial_matches;
    out.totals.expired_partial_matches += o.totals.expired_partial_matches;
    out.totals.keys_spilled += o.totals.keys_spilled;
    out.totals.keys_read_back += o.totals.keys_read_back;
    out.totals.keys_lost += o.totals.keys_lost;
    out.memory_bytes += o.memory_bytes;
    out.spilled_keys += o.spilled_keys;
    out.active_keys += o.active_keys;
    out.stored_nodes += o.stored_nodes;
    for (const auto& [id, n] : o.partial_matches) out.partial_matches[id] += n;
  }
  // An event that went to several workers is one event; late ones reached none.
  out.totals.events = events_;
  out.totals.late_events = late_events_;
  return out;
}

namespace {

// The engine's progress, format 1: u8 version, watermark, largest event time, the sources
// (largest event time, flags: active 1, idle 2), then each worker's Matcher progress.
constexpr uint8_t kProgressFormat = 1;

}  // namespace

Result<std::string> ShardedMatcher::Checkpoint(std::span<nfa::StateWriter* const> writers, bool everything) {
  std::vector<std::string> progress(workers_.size());
  std::vector<Status> results(workers_.size());
  writing_ahead_ = false;
  Barrier([&](Worker& w) {
    StopAhead(w);
    results[w.index] = w.matcher->WriteChanges(writers[w.index], everything);
    progress[w.index] = w.matcher->EncodeProgress();
  });
  for (Status& s : results) {
    if (!s.ok()) return std::move(s);
  }
  std::string out(1, static_cast<char>(kProgressFormat));
  PutSignedVarint(&out, watermark_ms_);
  PutSignedVarint(&out, max_time_ms_);
  PutVarint(&out, sources_.size());
  for (const Source& source : sources_) {
    PutSignedVarint(&out, source.max_time_ms);
    PutVarint(&out, (source.active ? 1u : 0u) | (source.idle ? 2u : 0u));
  }
  PutVarint(&out, progress.size());
  for (const std::string& p : progress) PutBytes(&out, p);
  return out;
}

Status ShardedMatcher::Restore(std::string_view progress, const KeyScan& scan) {
  if (progress.empty() || static_cast<uint8_t>(progress[0]) != kProgressFormat) {
    return Status::Corruption("stored engine progress has an unknown format");
  }
  ByteReader in(progress.substr(1));
  const int64_t watermark = in.SignedVarint();
  const int64_t max_time = in.SignedVarint();
  std::vector<Source> sources(in.Below(progress.size()));
  for (Source& source : sources) {
    source.max_time_ms = in.SignedVarint();
    const uint64_t flags = in.Varint();
    source.active = (flags & 1) != 0;
    source.idle = (flags & 2) != 0;
  }
  std::vector<std::string> matchers(in.Below(progress.size()));
  for (std::string& m : matchers) m = in.Bytes();
  if (!in.done()) return Status::Corruption("stored engine progress is truncated or corrupt");

  std::vector<Status> results(workers_.size());
  Barrier([&](Worker& w) {
    const nfa::EventRestorer& restore = w.matcher->options().restore_events;
    Status s = w.matcher->RestoreProgress(matchers, restore);
    if (s.ok()) {
      s = scan([&](std::string_view pattern_id, std::string_view identity, std::string_view state) {
        return w.matcher->RestoreKey(pattern_id, identity, state, restore);
      });
    }
    results[w.index] = std::move(s);
  });
  for (Status& s : results) {
    if (!s.ok()) return std::move(s);
  }
  watermark_ms_ = handed_out_watermark_ms_ = watermark;
  max_time_ms_ = max_time;
  sources_ = std::move(sources);
  return Status::Ok();
}

void ShardedMatcher::Reset() {
  writing_ahead_ = false;
  Barrier([](Worker& w) {
    StopAhead(w);
    w.matcher = std::make_unique<nfa::Matcher>(std::vector<std::shared_ptr<const nfa::Nfa>>{},
                                               w.matcher->options(), &w.sink);
    PublishCosts(w);
  });
  patterns_.clear();
  RebuildKeyGroups();
  watermark_ms_ = handed_out_watermark_ms_ = max_time_ms_ = INT64_MIN;
  events_ = late_events_ = 0;
  sources_.clear();
}

}  // namespace vigil::engine
