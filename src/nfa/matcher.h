#pragma once
// Matcher: the keyed, event-time operator around the NFA runtime (Flink's CepOperator).
//
// Takes events in arrival order, for any number of patterns at once, and:
//  1. keeps a watermark, the largest event time seen minus the allowed out-of-orderness; an
//     event older than the watermark is late: reported to the sink, never matched;
//  2. holds events back until the watermark passes them, then feeds them in event-time order
//     (equal times in arrival order), each to the state of its key under every pattern;
//  3. fires per-key timers when the watermark passes a `within` deadline, so windows close
//     (timeouts, trailing not_followed_by) even for keys that see no further event;
//  4. keeps no state for a key whose runs are all gone.
// The event is parsed once; every pattern reads the same Event. Not thread-safe: a Matcher is
// one matching thread's.
//
// Patterns can be added, replaced and removed while events flow (hot reload). Each pattern's
// state (its keys' runs, held matches and timers) is its own, so:
//  1. changing one pattern never touches another's runs, timers or pending matches;
//  2. replacing or removing a pattern drops all of its state; nothing of the old version
//     completes, times out or reaches the sink afterwards;
//  3. a change takes effect for the next event added: a new pattern (or version) sees the
//     events added after it, in event-time order, and none before, not even events added
//     before it but still held back for the watermark (max_out_of_orderness_ms > 0). So what
//     a pattern sees depends only on the order of changes and events, not on where and how
//     long events wait (the sharded engine relies on this).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nfa/event_key.h"
#include "nfa/key_index.h"
#include "nfa/nfa.h"
#include "nfa/state_codec.h"
#include "nfa/time_queue.h"

namespace vigil::nfa {

struct MatcherOptions {
  // How far behind the largest event time seen an event may arrive and still be matched.
  // Default: 0 (events must arrive in event-time order).
  int64_t max_out_of_orderness_ms = 0;
  // Runs (partial matches) kept per key and pattern; the oldest beyond it are dropped and
  // counted. Default: 10000.
  size_t max_partial_matches_per_key = 10000;
  // Partial matches kept per pattern over all keys; beyond it the key that went over drops
  // its oldest, then other keys theirs, one each in turn, all counted. A protection, not a
  // semantic: which other keys pay depends on the order records were made, so while it is in
  // effect a restart may drop others. 0: no limit. Default: 0.
  size_t max_partial_matches_per_pattern = 0;
  // This Matcher matches only the keys that ShardOf() gives to `shard` of `shards` (see
  // event_key.h); events of other keys are passed over without a trace. Default: all keys.
  uint32_t shard = 0;
  uint32_t shards = 1;
  // State TTL for patterns without `within`: a run that started this long (event time) before
  // the watermark is dropped and counted; 0: runs live until they complete. Default: 0.
  int64_t max_state_age_ms = 0;
  // Remember which keys change, for WriteChanges() (checkpoints). Default: off.
  bool track_changes = false;
  // Memory the keys' state may take, as memory_bytes() estimates it; beyond it the least
  // recently used keys are moved to `spill` (their timers stay) and read back when an event
  // or a timer needs them. 0: no limit. REQUIRES: spill set when not 0. Default: 0.
  uint64_t memory_budget_bytes = 0;
  class StateSpill* spill = nullptr;
  // Parses the events of spilled states read back (REQUIRES: set when spill is).
  EventRestorer restore_events;
};

// Where keys beyond the memory budget wait: the port a state backend implements, one per
// Matcher (used on its thread only). Values are EncodeKeyState's.
class StateSpill {
 public:
  virtual ~StateSpill() = default;
  // Keeps the state of a key moved out of memory, replacing any kept before.
  virtual Status Put(std::string_view pattern_id, std::string_view identity, std::string_view state) = 0;
  // The state of a key out of memory: the one Put last, or else the one of the checkpoint the
  // Matcher was restored from. `take`: the key comes back to memory (a Put copy is dropped).
  // Errors: kNotFound when neither has it, kIoError.
  virtual Result<std::string> Get(std::string_view pattern_id, std::string_view identity, bool take) = 0;
};

// Receives what the Matcher produces. Called on the matching thread.
class MatchSink {
 public:
  virtual ~MatchSink() = default;
  // A match or a timed-out partial match of `nfa` for the key whose JSON value is `key_json`.
  virtual void OnMatch(const Nfa& nfa, std::string_view key_json, const Match& match) = 0;
  // `event` arrived below the watermark and was not matched.
  virtual void OnLate(const Event& event, int64_t watermark_ms) = 0;
  // `event` could not be matched by `nfa` (for example its key field is missing).
  virtual void OnRejected(const Event& event, const Nfa& nfa, std::string_view reason) = 0;
};

// Where a Matcher's state goes at a checkpoint: the port a state backend implements. A key is
// (pattern id, key identity as EncodeKey gives it); its value is EncodeKeyState's.
class StateWriter {
 public:
  virtual ~StateWriter() = default;
  // Every stored key of pattern `id` is gone (the pattern was replaced or removed).
  virtual void DropPattern(std::string_view id) = 0;
  // Every stored key is gone (the Matcher writes all it has next).
  virtual void DropAll() = 0;
  virtual void PutKey(std::string_view pattern_id, std::string_view identity, std::string_view state) = 0;
  virtual void DeleteKey(std::string_view pattern_id, std::string_view identity) = 0;
};

class Matcher {
 public:
  struct Stats {
    uint64_t events = 0;
    uint64_t late_events = 0;
    uint64_t matches = 0;
    uint64_t timeouts = 0;
    uint64_t dropped_partial_matches = 0;
    uint64_t expired_partial_matches = 0;  // max_state_age_ms
    uint64_t keys_spilled = 0;     // moved out of memory (memory_budget_bytes)
    uint64_t keys_read_back = 0;   // brought back to memory
    uint64_t keys_lost = 0;        // whose spilled state could not be read back (logged by the spill)
  };

  // Starts with `patterns`, matched in that order. REQUIRES: their ids are distinct.
  Matcher(std::vector<std::shared_ptr<const Nfa>> patterns, MatcherOptions options,
          MatchSink* sink);
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Adds one event (typically the parser's scratch Event; it is copied only if kept). The
  // event is only read, so other threads may read it at the same time.
  void Add(const Event* event);

  // Adds events in order, as Add() would, after loading the state of all their keys into the
  // cache at once: a key's state is a few dependent memory reads, and overlapping them across
  // a batch hides most of their latency. Timers due within the batch fire at its end (the
  // matches are the same; only their order on the sink may differ). One exception, as in
  // Flink, whose timers fire per watermark: with reported timeouts under a skip strategy, a
  // key whose windows close in one step may report a run as timed out that closing them one
  // at a time would have pruned first.
  void AddBatch(std::span<const Event* const> events) { AddBatch(events, KeyHashes{}); }

  // The key hashes of a batch, computed where the events were parsed (HashKey of each key's
  // identity, 0 for a key that cannot be one): by_event_and_group[i * G + g] is event i's under
  // key_slots[g], G = key_slots->size(). Used only when key_slots lists this Matcher's key
  // fields in its own order (patterns' key fields, first use first, as listed by key_slots()).
  struct KeyHashes {
    const std::vector<int>* key_slots = nullptr;
    std::span<const uint64_t> by_event_and_group;
  };
  // AddBatch, without hashing the keys again. `watermarks`, when given, is the stream's
  // watermark right after each event, as decided where the events entered (several sources,
  // or other shards' events, can move it past what these events show): an event at or below
  // it is matched at once (after the events held back up to its time) instead of waiting for
  // AdvanceWatermark.
  void AddBatch(std::span<const Event* const> events, const KeyHashes& hashes,
                std::span<const int64_t> watermarks = {});

  // Advances the watermark without an event (a quiet live stream): events held back that it
  // passes are matched and timers due by it fire. Later events below it are late. No effect
  // when not beyond the current watermark.
  void AdvanceWatermark(int64_t watermark_ms);

  // The largest event time seen (INT64_MIN before the first event).
  int64_t max_event_time_ms() const { return max_time_ms_; }

  // End of input: event time advances to the end of time; every window closes.
  void Finish();

  // Hot reload (see the class comment for what a change promises). Patterns are identified by
  // Pattern::id. Disabling a pattern is RemovePattern here; its definition is the caller's to
  // keep. A new pattern sees only events added after it: call EventParser::Refresh() before
  // parsing them if it reads new fields.
  // Every call returns kFailedPrecondition when made from a MatchSink callback (the patterns
  // must not change under the event being matched).

  // Adds `nfa`, with no state, after the patterns present. REQUIRES: nfa != nullptr.
  // Errors: kAlreadyExists when a pattern with its id is present.
  Status AddPattern(std::shared_ptr<const Nfa> nfa);

  // Drops all state of the pattern with nfa's id and puts `nfa` in its place (same position in
  // the matching order), with no state. Returns the partial matches dropped (as counted by
  // partial_matches()). REQUIRES: nfa != nullptr. Errors: kNotFound when the id is absent.
  Result<size_t> ReplacePattern(std::shared_ptr<const Nfa> nfa);

  // Drops all state of the pattern `id` and removes it. Returns the partial matches dropped.
  // Errors: kNotFound when the id is absent.
  Result<size_t> RemovePattern(std::string_view id);

  // Checkpoints. A Matcher's state is its keys' states (written to a StateWriter key by key,
  // so a checkpoint costs what changed) and its progress (watermark, event time, held-back
  // events, counters that order events and pattern changes), a few bytes plus held events.

  // Writes what changed since the last call: first the patterns whose state was dropped, then
  // every key whose state changed, deleted when none is left. `everything`: every stored key
  // is dropped and every key is written (after a checkpoint that failed, whose changes are
  // lost). REQUIRES: options.track_changes; not called from a sink callback.
  // Errors: the spill's, for a key out of memory.
  Status WriteChanges(StateWriter* writer, bool everything = false);
  // Writes part of what WriteChanges would, ahead of it, so that less is left for the
  // checkpoint's barrier: the dropped patterns, then up to `max_keys` deletions and changed
  // keys, oldest changes first (the newest are the likeliest to change again), passing over
  // at most kSkipsPerKeyAhead listed keys per key that need no writing (ended, or written
  // since), so a call's work stays bounded. A key that changes again after it was written
  // ahead is written again. Returns how many deletions and changed keys may be left: an
  // upper bound, as some listed may since have gone (0: none left).
  // REQUIRES: as WriteChanges, with the writer WriteChanges will be given next.
  Result<size_t> WriteChangesAhead(StateWriter* writer, size_t max_keys);
  static constexpr size_t kSkipsPerKeyAhead = 16;
  std::string EncodeProgress() const;

  // Restoring, into a Matcher made with the checkpoint's patterns that has seen no event yet.
  // `progress`: EncodeProgress() of each Matcher of the checkpoint (all shards, so the shard
  // count may change across a restart); held-back events are merged in input (line) order, and
  // each Matcher matches only the keys it owns. Errors: kCorruption for an unreadable value.
  Status RestoreProgress(std::span<const std::string> progress, const EventRestorer& restore);
  // One key's state of pattern `pattern_id`; a key of another shard or of a pattern not present
  // is passed over. Errors: as DecodeKeyState's.
  Status RestoreKey(std::string_view pattern_id, std::string_view identity, std::string_view state,
                    const EventRestorer& restore);

  // The ids of the patterns present, in matching order.
  std::vector<std::string> pattern_ids() const;
  // The pattern `id`; nullptr when absent.
  std::shared_ptr<const Nfa> pattern(std::string_view id) const;
  // Partial matches that pattern `id` holds over all keys: runs in progress plus completed
  // matches held back for an earlier run (skip strategies); 0 when absent.
  size_t partial_matches(std::string_view id) const;

  const MatcherOptions& options() const { return options_; }
  // The patterns' distinct key fields (schema slots; -1: no key), in order of first use.
  const std::vector<int>& key_slots() const { return key_slots_; }
  int64_t watermark_ms() const { return watermark_ms_; }
  const Stats& stats() const { return stats_; }
  // Keys that hold state, over all patterns.
  size_t active_keys() const;
  // Events held by partial matches (shared-buffer nodes) in memory, over all patterns.
  size_t stored_nodes() const { return runtime_.buffer().live_nodes(); }
  // An estimate of the memory the state takes: retained events, shared-buffer nodes, key
  // records. Only meaningful on the matching thread (retained events are counted per thread).
  uint64_t memory_bytes() const;
  // Keys whose state is out of memory (memory_budget_bytes).
  size_t spilled_keys() const { return spilled_keys_; }

  // What matching one pattern (version) has cost since it was added: the events of its own
  // keys it stepped, and an estimate of the time that took, from about one event in
  // kCostSampleEvery timed (a clock read for every event would cost more than many patterns).
  static constexpr uint64_t kCostSampleEvery = 16;
  struct PatternCost {
    std::shared_ptr<const Nfa> nfa;
    uint64_t events = 0;
    uint64_t samples = 0;     // events timed
    uint64_t sampled_ns = 0;  // their time
    // The estimate of all events' time: samples come kCostSampleEvery events apart on average,
    // so this only grows (a counter), unlike sampled_ns * events / samples.
    uint64_t cpu_ns() const { return sampled_ns * kCostSampleEvery; }
  };
  // Every pattern's, in matching order, into `out` (its storage reused).
  void CollectCosts(std::vector<PatternCost>* out) const;

 private:
  struct KeyRecord {
    std::string identity;  // the key's type and value, as indexed (see EncodeKey)
    uint64_t hash = 0;
    KeyNfaState state;
    int64_t timer_ms = INT64_MAX;
    uint32_t generation = 0;
    bool live = false;
    bool changed = false;  // since last written, ahead or not (track_changes)
    bool stored = false;   // the state backend holds a value for this key, or will at the next checkpoint
    bool spilled = false;  // the state is in the spill, not in `state`
    bool recently_used = false;  // the eviction clock's reference bit
    uint32_t runs = 0;           // partial matches the key holds, as last counted (CountRuns)
  };
  struct Timer {
    int64_t deadline_ms;
    uint32_t record;
    uint32_t generation;
  };
  struct PatternSlot {
    std::shared_ptr<const Nfa> nfa;
    size_t key_group = 0;  // index of its key field in key_slots_
    uint64_t since_epoch = 0;  // epoch_ when it was added: it sees events added from then on
    KeyIndex index;
    std::vector<KeyRecord> records;
    std::vector<uint32_t> free_records;
    TimeQueue<Timer> timers;  // by deadline
    // track_changes: records changed since last written, as (index, generation), oldest
    // first from changed_from (those before it are written), and identities of stored keys
    // whose state is gone.
    std::vector<std::pair<uint32_t, uint32_t>> changed;
    size_t changed_from = 0;
    std::vector<std::string> deleted;
    uint64_t runs = 0;         // the records' runs summed
    uint32_t limit_hand = 0;   // where the per-pattern limit takes runs from next
    uint64_t events = 0;       // stepped (PatternCost)
    uint64_t samples = 0;      // of them timed
    uint64_t sampled_ns = 0;   // the time of those
    uint32_t until_sample = 1;  // events until the next one timed
  };
  struct Waiting {
    EventRef event;
    uint64_t arrival;  // kept in checkpoints, for the order of a restored queue
    uint64_t epoch;    // epoch_ when it was added
  };

  bool Owns(uint64_t key_hash) const {
    return options_.shards <= 1 || ShardOf(key_hash, options_.shards) == options_.shard;
  }
  // The key of the event being dispatched under one key field.
  struct EventKey {
    bool owned = true;  // false: another shard's key, skipped
    bool usable = false;
    uint64_t hash = 0;
    std::string identity;
  };
  // Fills key_slots_ and each slot's key_group.
  void GroupKeys();
  // Add() without firing timers.
  void Accept(const Event* event);
  // The watermark once the largest event time seen is `max_time_ms` and the stream's, as given
  // to AddBatch, is `given_watermark_ms` (INT64_MIN: none); never below the current one.
  int64_t WatermarkAfter(int64_t max_time_ms, int64_t given_watermark_ms) const;
  // Steps `state` of the slot's pattern with the current event, and counts the cost.
  void Step(PatternSlot& slot, KeyNfaState* state, CurrentEvent* current);
  // Matches the held-back events with time <= `watermark_ms`, in event-time order.
  void ReleaseWaiting(int64_t watermark_ms);
  // Issues the loads that matching `events` will need (their keys' index slots, records and
  // runs), except for events later than `held_back_after`; returns whether `hashes` were of
  // this Matcher's key fields.
  bool PrefetchKeys(std::span<const Event* const> events, const KeyHashes& hashes,
                    int64_t held_back_after = INT64_MAX);
  // `given_hashes`: the event's key hashes by key group, or null to compute them. `epoch`:
  // epoch_ when the event was added; patterns added later pass it over.
  void Dispatch(CurrentEvent* current, const uint64_t* given_hashes, uint64_t epoch);
  void DispatchTo(PatternSlot& slot, CurrentEvent* current, uint64_t epoch);
  void AfterStep(PatternSlot& slot, uint32_t record_index);
  // Arms the record's timer at the next deadline of its runs (window or state age), if
  // earlier than the armed one.
  void ArmTimer(PatternSlot& slot, uint32_t record_index);
  // Brings a spilled key's state back to memory; false (the key's record freed and counted as
  // lost) when it cannot be read.
  bool ReadBack(PatternSlot& slot, uint32_t record_index);
  // Moves the state of a key out of memory. `write`: Put it in the spill (false: the checkpoint
  // restored from holds it already).
  bool Spill(PatternSlot& slot, uint32_t record_index, bool write);
  // Spills least recently used keys (clock) while memory_bytes() is over the budget.
  void KeepWithinBudget();
  // Frees the record of a key that holds nothing.
  void FreeRecord(PatternSlot& slot, uint32_t record_index);
  // Brings the key's run count and its pattern's total up to date.
  static void CountRuns(PatternSlot& slot, KeyRecord& record);
  void MarkChanged(PatternSlot& slot, uint32_t record_index);
  // Drops the key's oldest runs beyond `max_runs` (counted), hands out the matches that waited
  // for them, and recounts the key's runs.
  void KeepNewestRuns(PatternSlot& slot, KeyRecord& record, size_t max_runs);
  // Drops runs until the pattern is within max_partial_matches_per_pattern.
  void EnforcePatternLimit(PatternSlot& slot, uint32_t record_index);
  // Advances one key of `slot` to `time_ms`: closes windows, expires runs past their age.
  void AdvanceKey(const PatternSlot& slot, KeyNfaState* state, int64_t time_ms);
  void FireTimers(int64_t watermark_ms);
  // Hands the pending matches of `slot` for the key `identity` to the sink.
  void Emit(const PatternSlot& slot, std::string_view identity);
  // The slot of pattern `id`, or slots_.end().
  std::vector<PatternSlot>::iterator FindSlot(std::string_view id);
  std::vector<PatternSlot>::const_iterator FindSlot(std::string_view id) const;
  // Releases every key's state in `slot` (shared-buffer nodes included) and empties it;
  // returns the partial matches dropped.
  size_t DropState(PatternSlot& slot);
  // Returns kFailedPrecondition while events are being matched (from a sink callback).
  Status CheckNotMatching() const;

  // In matching order. Nothing keeps a slot's index or address across public calls (timers
  // name records within their own slot), so slots may be erased or moved between calls.
  std::vector<PatternSlot> slots_;
  MatcherOptions options_;
  MatchSink* sink_;
  NfaRuntime runtime_;
  Stats stats_;
  int64_t watermark_ms_ = INT64_MIN;
  int64_t max_time_ms_ = INT64_MIN;
  uint64_t next_seq_ = 0;
  uint64_t epoch_ = 0;  // counts patterns added or replaced
  uint64_t next_arrival_ = 0;
  TimeQueue<Waiting> waiting_;
  std::vector<Match> matches_;
  KeyNfaState scratch_state_;
  std::vector<std::string> dropped_patterns_;  // track_changes: since last written
  std::string encoded_;  // a key's state being written (its capacity reused)
  size_t spilled_keys_ = 0;
  uint64_t budget_floor_ = 0;  // memory left after a sweep that could not reach the budget
  uint64_t sample_random_ = 0x9E3779B97F4A7C15;  // draws the events Step times
  size_t clock_slot_ = 0;    // the eviction clock's hand: a slot and a record in it
  uint32_t clock_record_ = 0;
  std::string key_buffer_;
  // The distinct key fields of the patterns (-1: no key), so that patterns keyed alike
  // encode and hash an event's key once.
  std::vector<int> key_slots_;
  std::vector<EventKey> event_keys_;     // by key group, for the event being dispatched
  std::vector<uint64_t> group_hashes_;   // PrefetchKeys: by key group, for one event
  const uint64_t* given_hashes_ = nullptr;  // AddBatch: the accepted event's, when given
  int64_t given_watermark_ = INT64_MIN;      // AddBatch: the stream's after it, when given
  std::vector<uint64_t> batch_hashes_;   // PrefetchKeys: each (event, pattern)'s key hash
  std::vector<uint32_t> batch_records_;  // PrefetchKeys: the record each hash likely names
  std::vector<Waiting> released_;             // ReleaseWaiting: one group of held-back events
  std::vector<const Event*> released_events_;  // and the same events, for PrefetchKeys
  std::vector<Timer> due_;
  bool matching_ = false;  // inside Add, AddBatch or Finish (and so any sink callback)
};

}  // namespace vigil::nfa
