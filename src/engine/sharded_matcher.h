#pragma once
// ShardedMatcher: matching spread over worker threads, each owning a shard of the keys.
//
// Events enter as JSON text on one thread (the input thread: replay's reader, the HTTP
// server's thread), which copies them into chunks. A chunk is parsed by one worker (workers
// take chunks in turn, so parsing runs on every core; the input thread parses a chunk itself
// when it needs it before its worker has started on it) and then comes back to the input
// thread in input order. There the decisions of one Matcher are made once for all workers, in
// arrival order and from what the parse left behind (times and key hashes, nothing more):
// malformed events, the watermark, late events, unusable keys, and which workers own each
// event's keys (patterns keyed by different fields can need several). Then every worker reads
// the chunk, matches the events it owns and advances to the chunk's watermark, so all workers
// release held-back events and fire `within` deadlines at the same event time. A worker owns
// its keys' runs, shared buffer and timers outright; events are shared read-only and chunks
// change hands as a whole, so nothing is locked per event.
//
// Memory in flight is bounded by `chunks` chunks of `events_per_chunk` events; when all are in
// use, the input thread waits (back-pressure), nothing is dropped.
//
// Same input, same matches for every worker count: a key's events reach its one worker in
// arrival order, and every worker sees the stream's watermark. Only the interleaving of
// different workers' matches varies.
//
// Barriers: pattern changes, Sync, Finish and Observe go to every worker behind the chunks
// already handed out, and return when all workers have applied them, so every worker
// switches rule version at the same input position (Flink's aligned barriers). A mark goes
// the same way but is not waited for.
//
// With one worker there are no threads: the input thread parses and matches the chunks.
//
// Thread safety: every public method is for the input thread only, never from a sink callback.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nfa/field_schema.h"
#include "nfa/matcher.h"

namespace vigil::engine {

// The most worker threads an engine may be given.
inline constexpr size_t kMaxWorkers = 256;

// The CPUs this process may run on (its affinity mask), at least 1.
size_t AvailableCpus();

struct EngineOptions {
  // shard and shards are set by the engine for each worker.
  nfa::MatcherOptions matcher;
  // Event time field: epoch milliseconds or RFC 3339.
  std::string time_field = "ts";
  size_t workers = 1;
  size_t events_per_chunk = 256;
  // Chunks being filled, parsed or matched at once, at least 2; bounds the events in flight.
  // 0: 16 per worker, plus 32 (enough to ride out a worker descheduled for a few
  // milliseconds: every worker reads every chunk, so one behind holds them all).
  size_t chunks = 0;
  // Input from several sources (Add's `source`, Kafka partitions): the workers then follow the
  // engine's watermark only (at some cost: every event waits for it). Default: one source.
  bool several_sources = false;
  // With matcher.memory_budget_bytes (shared equally by the workers): worker i's spill.
  std::vector<nfa::StateSpill*> spills;
};

// Decisions made where events enter; called on the input thread, in input order.
class InputSink {
 public:
  virtual ~InputSink() = default;
  // The text numbered `line` is not an event (malformed JSON, no usable time, ...).
  virtual void OnMalformed(uint64_t line, std::string_view text, std::string_view reason) = 0;
  // `event` arrived below the watermark and was not matched.
  virtual void OnLate(const nfa::Event& event, int64_t watermark_ms) = 0;
  // `event` could not be matched by `nfa` (its key field is missing or not a scalar).
  virtual void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) = 0;
};

// One worker's matches; called on that worker's thread.
class WorkerSink {
 public:
  virtual ~WorkerSink() = default;
  // Before the matches caused by events that entered at `entered_steady_ns` (see Add; 0 when
  // what follows owes nothing to recent input).
  virtual void BeginBlock(int64_t entered_steady_ns) { (void)entered_steady_ns; }
  virtual void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) = 0;
  // Every match of the events added before ShardedMatcher::Mark(mark) has been delivered.
  virtual void OnMark(uint64_t mark) { (void)mark; }
};

class ShardedMatcher {
 public:
  struct WorkerStats {
    uint64_t events = 0;    // events this worker matched
    uint64_t busy_ns = 0;   // time spent parsing and matching
    size_t queued = 0;      // chunks waiting for this worker
    size_t keys = 0;        // keys holding state
  };
  struct Observation {
    nfa::Matcher::Stats totals;  // events and late_events counted once, where they entered
    size_t active_keys = 0;
    size_t stored_nodes = 0;
    uint64_t memory_bytes = 0;  // Matcher::memory_bytes() summed
    size_t spilled_keys = 0;
    std::map<std::string, size_t> partial_matches;  // by pattern id
    std::vector<WorkerStats> workers;
  };

  // Patterns read fields of `schema`, which the engine's parsers follow at each pattern change
  // (it may grow between them). REQUIRES: 1 <= options.workers <= kMaxWorkers,
  // worker_sinks.size() == options.workers; the schema and sinks outlive this object; pattern
  // ids are distinct.
  ShardedMatcher(std::vector<std::shared_ptr<const nfa::Nfa>> patterns, nfa::FieldSchema* schema,
                 EngineOptions options, InputSink* input_sink, std::vector<WorkerSink*> worker_sinks);
  // Stops the workers; events not yet matched are dropped (call Finish() to match them).
  ~ShardedMatcher();
  ShardedMatcher(const ShardedMatcher&) = delete;
  ShardedMatcher& operator=(const ShardedMatcher&) = delete;

  size_t workers() const { return workers_.size(); }

  // Events Add() can take now without waiting for a worker to free a chunk, and at most
  // (every chunk free). Lets an input refuse work (HTTP 503) instead of blocking its thread.
  size_t room_now() const;
  size_t room_at_most() const { return options_.chunks * options_.events_per_chunk; }
  // Half the room or more is taken: the workers are behind, and a barrier (Observe, Sync, a
  // checkpoint) would wait for their backlog.
  bool behind() const { return room_now() < room_at_most() / 2; }

  // Takes one event's JSON text (copied), numbered `line` in reports. The workers' matches
  // caused by it are announced with `entered_steady_ns` (WorkerSink::BeginBlock). `source`:
  // the input it came from (a Kafka partition), for the watermark (see SetSourceIdle).
  void Add(std::string_view text, uint64_t line, int64_t entered_steady_ns = 0, uint32_t source = 0);
  // Sources and the watermark, as Flink combines partitions: each source's watermark is its
  // largest event time less the allowed out-of-orderness, and the stream's is the smallest
  // over the active sources that are not idle. A source becomes active with its first event,
  // or when announced here (idle false: a new Kafka partition holds the watermark back until
  // it delivers or is declared idle). An idle source (no input for a while; the caller
  // decides) no longer holds it back, until it delivers again. When every source is idle, the
  // stream's watermark is the largest of theirs (nothing holds it back any more). With one
  // source this is the largest event time less the allowed out-of-orderness.
  void SetSourceIdle(uint32_t source, bool idle);
  // One source's own watermark (its largest event time less the allowed lateness); INT64_MIN
  // before its first event.
  int64_t source_watermark_ms(uint32_t source) const;
  // Decides every event added so far (reporting to the input sink before it returns) and
  // hands them and the current watermark to the workers. Does not wait for matching.
  void Flush();
  // Flush(), then waits until every worker has matched everything it was given.
  void Sync();
  // Flush(), then tells every worker's sink `mark` (WorkerSink::OnMark) once that worker has
  // matched everything it was given. Does not wait: another thread can wait for the sinks
  // instead, while the input goes on. REQUIRES: every worker has passed the previous mark.
  void Mark(uint64_t mark);
  // As Matcher::AdvanceWatermark, for every worker (flushed).
  void AdvanceWatermark(int64_t watermark_ms);
  // End of input: every worker matches what it holds and closes every window. Synchronous.
  void Finish();

  int64_t watermark_ms() const { return watermark_ms_; }
  int64_t max_event_time_ms() const { return max_time_ms_; }

  // Hot reload, as the Matcher's methods of the same names, applied at one input position in
  // every worker: a new pattern (or version) sees exactly the events added after the call,
  // parsed for its fields, whichever worker holds them.
  // ReplacePattern and RemovePattern return the partial matches dropped over all workers.
  Status AddPattern(std::shared_ptr<const nfa::Nfa> nfa);
  Result<size_t> ReplacePattern(std::shared_ptr<const nfa::Nfa> nfa);
  Result<size_t> RemovePattern(std::string_view id);

  // Counters and state sizes over all workers, taken at one input position (a barrier).
  Observation Observe();

  // What matching each pattern (version) has cost, summed over the workers as each stood after
  // the last chunk it matched: no barrier, so it can be asked while the workers are behind.
  // In no particular order; a pattern just removed may still be listed.
  std::vector<nfa::Matcher::PatternCost> PatternCosts() const;

  // Checkpoints (see nfa::StateWriter). At one input position (a barrier), worker i writes
  // the keys that changed since the last checkpoint (`everything`: all keys, see
  // Matcher::WriteChanges) to writers[i], on its own thread; returns the engine's progress
  // (watermark, largest event time, every worker's Matcher progress) as one value.
  // REQUIRES: options.matcher.track_changes; writers.size() == workers(). Errors: a worker's
  // (its spill's); the checkpoint is then incomplete and the next must be `everything`.
  Result<std::string> Checkpoint(std::span<nfa::StateWriter* const> writers, bool everything = false);
  // Starts writing the next checkpoint's changes ahead of its barrier, so that the barrier
  // finds fewer left (nfa::Matcher::WriteChangesAhead; a key that changes again is written
  // again): from now until the Checkpoint (or Finish, Reset, StopWritingAhead), worker i
  // writes changed keys to writers[i] while it has no input waiting, and after each chunk
  // one key (or deletion) for every kEventsPerKeyAhead events it matched (rounded up) unless
  // more input waits. Does not wait. REQUIRES: as Checkpoint, with the writers it will be
  // given.
  void WriteAhead(std::span<nfa::StateWriter* const> writers);
  static constexpr size_t kEventsPerKeyAhead = 4;
  // No more writing ahead (a barrier): the writers may go.
  void StopWritingAhead();

  // Calls `visit` for every stored key (pattern id, key identity, state); stops at and returns
  // the first error, its own or visit's.
  using KeyVisitor = std::function<Status(std::string_view pattern_id, std::string_view identity,
                                          std::string_view state)>;
  using KeyScan = std::function<Status(const KeyVisitor& visit)>;
  // Restores a checkpoint into this engine, which must have the checkpoint's patterns and no
  // events yet. `scan` is called once by every worker, on its own thread, at the same time;
  // each keeps the keys it owns, so the checkpoint may come from a different worker count.
  // Errors: kCorruption for unreadable progress or state, scan's errors. On error the engine
  // holds part of the state: discard it.
  Status Restore(std::string_view progress, const KeyScan& scan);
  // Back to no patterns, no state and no watermark, as if just made (after a failed Restore).
  void Reset();

  // The patterns, in matching order.
  const std::vector<std::shared_ptr<const nfa::Nfa>>& patterns() const { return patterns_; }

 private:
  struct Chunk;
  struct Parsing;
  struct Worker;
  struct KeyGroup {  // one field the patterns key by (key_slot -1: no key)
    int key_slot;
    // The events any of the group's patterns can use, when all of theirs filter on one field
    // (nfa::EventFilter); null: any event.
    std::shared_ptr<const nfa::EventFilter> filter;
  };

  bool threaded() const { return workers_.size() > 1; }
  void RebuildKeyGroups();
  // Runs `task` on every worker after the chunks handed out, and waits for all.
  void Barrier(const std::function<void(Worker&)>& task);
  // The chunk being filled, taken from the pool if there is none.
  Chunk& Filling();
  // Sends the chunk being filled to be parsed.
  void Dispatch();
  // The text a chunk usually holds, in bytes: what its buffer is sized for.
  size_t UsualArenaBytes() const;
  // Takes the oldest chunk sent for parsing once it is parsed, decides its events and hands
  // it to every worker.
  void DecideOldest();
  void Decide(Chunk& chunk);
  void HandOut(Chunk* chunk);
  void Parse(Parsing& parsing, Chunk& chunk);
  std::vector<std::shared_ptr<const nfa::Nfa>>::iterator FindPattern(std::string_view id);
  // Applies `change` to every worker's Matcher at a barrier, then lets every parser pick up
  // new fields; returns each worker's result (`initial` until set).
  template <typename T>
  std::vector<T> ChangeEveryWorker(const std::function<T(nfa::Matcher&)>& change, T initial);
  void Match(Worker& worker, Chunk& chunk);
  // Writes up to `max_keys` changed keys ahead (the worker is writing ahead).
  static void WriteSomeAhead(Worker& worker, size_t max_keys);
  static void StopAhead(Worker& worker);
  // Writing ahead while waiting: keys written between two looks at the inbox.
  static constexpr size_t kAheadKeysWhileIdle = 64;
  // Makes the worker's pattern costs readable by PatternCosts (on the worker's thread).
  static void PublishCosts(Worker& worker);
  // Returns a chunk whose readers are done with it to the pool.
  void Release(Chunk* chunk);
  void RunWorker(Worker& worker);

  EngineOptions options_;
  nfa::FieldSchema* schema_;
  InputSink* input_sink_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Chunk>> all_chunks_;
  struct FreeChunks;
  std::unique_ptr<FreeChunks> free_chunks_;
  // The input thread's parser: all of them with one worker; with more, for the chunks it
  // parses rather than wait for the worker they were sent to.
  std::unique_ptr<Parsing> input_parsing_;
  std::vector<std::shared_ptr<const nfa::Nfa>> patterns_;  // as the workers have them
  std::vector<KeyGroup> key_groups_;    // distinct key fields, in order of first use
  std::vector<size_t> pattern_groups_;  // by pattern: its index in key_groups_
  Chunk* filling_ = nullptr;
  std::deque<Chunk*> parsing_;  // sent for parsing, in input order
  size_t next_parser_ = 0;
  bool writing_ahead_ = false;  // since the last Checkpoint
  int64_t watermark_ms_ = INT64_MIN;
  int64_t handed_out_watermark_ms_ = INT64_MIN;
  int64_t max_time_ms_ = INT64_MIN;
  uint64_t events_ = 0;
  uint64_t late_events_ = 0;
  std::vector<uint32_t> targets_;  // workers the event being decided goes to
  struct Source {
    int64_t max_time_ms = INT64_MIN;
    bool active = false;  // delivered an event or was announced (SetSourceIdle)
    bool idle = false;
  };
  std::vector<Source> sources_;  // by source number
  // The smallest watermark over the sources that hold it back, or with every one idle the
  // largest; INT64_MIN before any event.
  int64_t SourcesWatermark() const;
};

}  // namespace vigil::engine
