#pragma once
// ShardedMatcher: the Matcher spread over worker threads, each owning a shard of the keys.
//
// Events enter on one thread (the input thread: replay's reader, the HTTP server's thread),
// already parsed. There the watermark is kept and late events and unusable keys are decided,
// once, in arrival order, exactly as one Matcher would decide them. Each event is then copied
// into a block for every worker owning one of its keys (patterns keyed by different fields can
// send it to several) and blocks travel over bounded queues; each block carries the watermark
// as of its last event, so every worker releases held-back events and fires `within` deadlines
// at the same event time. A worker owns its keys' runs, shared buffer and timers outright:
// nothing is shared or locked per event. Memory in flight is bounded (blocks_per_worker
// blocks of events_per_block events per worker); a full queue makes the input thread wait.
//
// Same input, same matches for every worker count: a key's events reach its one worker in
// arrival order, and a worker's Matcher sees the stream's watermark. Only the interleaving of
// different workers' matches varies.
//
// Barriers: pattern changes, Finish and Observe go to every worker in band, behind the events
// already routed, and return when all workers have applied them, so every worker switches
// rule version at the same input position (Flink's aligned barriers).
//
// With one worker there are no threads: the input thread matches, as a plain Matcher would.
//
// Thread safety: every public method is for the input thread only, never from a sink callback.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "nfa/matcher.h"

namespace vigil::engine {

// The most worker threads an engine may be given.
inline constexpr size_t kMaxWorkers = 256;

// The CPUs this process may run on (its affinity mask), at least 1.
size_t AvailableCpus();

struct EngineOptions {
  // shard and shards are set by the engine for each worker.
  nfa::MatcherOptions matcher;
  size_t workers = 1;
  size_t events_per_block = 2048;
  // Blocks per worker that may be queued or in work; with events_per_block, bounds the events
  // in flight per worker.
  size_t blocks_per_worker = 8;
};

// Decisions made where events enter; called on the input thread.
class InputSink {
 public:
  virtual ~InputSink() = default;
  // `event` arrived below the watermark and was not matched.
  virtual void OnLate(const nfa::Event& event, int64_t watermark_ms) = 0;
  // `event` could not be matched by `nfa` (its key field is missing or not a scalar).
  virtual void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) = 0;
};

// One worker's matches; called on that worker's thread.
class WorkerSink {
 public:
  virtual ~WorkerSink() = default;
  // Before the matches caused by events that entered at `entered_steady_ns` (see AddBatch).
  virtual void BeginBlock(int64_t entered_steady_ns) { (void)entered_steady_ns; }
  virtual void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) = 0;
};

class ShardedMatcher {
 public:
  struct WorkerStats {
    uint64_t events = 0;    // events delivered to this worker
    uint64_t busy_ns = 0;   // time spent matching them
    size_t queued_blocks = 0;
    size_t keys = 0;        // keys holding state
  };
  struct Observation {
    nfa::Matcher::Stats totals;  // events and late_events counted once, where they entered
    size_t active_keys = 0;
    size_t stored_nodes = 0;
    std::map<std::string, size_t> partial_matches;  // by pattern id
    std::vector<WorkerStats> workers;
  };

  // REQUIRES: options.workers >= 1, worker_sinks.size() == options.workers; the sinks outlive
  // this object. Pattern ids are distinct.
  ShardedMatcher(std::vector<std::shared_ptr<const nfa::Nfa>> patterns, EngineOptions options,
                 InputSink* input_sink, std::vector<WorkerSink*> worker_sinks);
  // Stops the workers; events not yet matched are dropped (call Finish() to match them).
  ~ShardedMatcher();
  ShardedMatcher(const ShardedMatcher&) = delete;
  ShardedMatcher& operator=(const ShardedMatcher&) = delete;

  size_t workers() const { return workers_.size(); }

  // Takes parsed events in arrival order (copying what it keeps; the events are free for
  // reuse on return). `entered_steady_ns` is handed to the worker sinks with their matches.
  void AddBatch(std::span<nfa::Event* const> events, int64_t entered_steady_ns = 0);
  // Hands every worker the events routed to it so far and the current watermark. Returns at
  // once; until it is called, events may wait in a partly filled block.
  void Flush();
  // Flush(), then waits until every worker has matched everything it was given.
  void Sync();
  // As Matcher::AdvanceWatermark, for every worker (flushed).
  void AdvanceWatermark(int64_t watermark_ms);
  // End of input: every worker matches what it holds and closes every window. Synchronous.
  void Finish();

  int64_t watermark_ms() const;
  int64_t max_event_time_ms() const;

  // Hot reload, as the Matcher's methods of the same names, applied at one input position in
  // every worker. ReplacePattern and RemovePattern return the partial matches dropped over all
  // workers.
  Status AddPattern(std::shared_ptr<const nfa::Nfa> nfa);
  Result<size_t> ReplacePattern(std::shared_ptr<const nfa::Nfa> nfa);
  Result<size_t> RemovePattern(std::string_view id);

  // Counters and state sizes over all workers, taken at one input position (a barrier).
  Observation Observe();

 private:
  struct Block;
  struct Worker;
  struct KeyGroup {  // the patterns keyed by one field (key_slot -1: no key)
    int key_slot;
    std::vector<const nfa::Nfa*> patterns;
  };

  bool threaded() const { return workers_.size() > 1; }
  void RebuildKeyGroups();
  // Runs `task` on every worker's thread after the events routed to it, and waits for all.
  void Barrier(const std::function<void(Worker&)>& task);
  // The block `worker` is filling, started if needed.
  Block& Filling(Worker& worker);
  void Send(Worker& worker);
  void Route(nfa::Event* event, int64_t entered_steady_ns);
  void RunWorker(Worker& worker);

  EngineOptions options_;
  InputSink* input_sink_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::shared_ptr<const nfa::Nfa>> patterns_;  // as the workers have them
  std::vector<KeyGroup> key_groups_;
  // Where events enter (threaded only; with one worker its Matcher keeps these).
  int64_t watermark_ms_ = INT64_MIN;
  int64_t max_time_ms_ = INT64_MIN;
  uint64_t events_ = 0;
  uint64_t late_events_ = 0;
  std::string key_buffer_;
  std::vector<uint32_t> targets_;  // shards the event being routed goes to
};

}  // namespace vigil::engine
