#pragma once
// NfaRuntime: runs a compiled Nfa for one key at a time (Flink's NFA.process / advanceTime).
//
// The per-key state (KeyNfaState, Flink's NFAState) lives outside, owned by the caller, so a
// key's state can be kept in memory, spilled or checkpointed without the runtime knowing.
// Invariants of a KeyNfaState:
//  1. `partial` holds the runs in progress, sorted by the sequence number of their first
//     event; the start state (a run with no event yet) is implicit and never stored.
//  2. `completed` holds finished matches held back by a skip strategy while a run that
//     started earlier is alive (Flink's ordering), sorted the same way.
//  3. Every run holds one reference on its last BufferNode in the runtime's SharedBuffer; a
//     KeyNfaState must therefore be used with the runtime that created it, and released with
//     Clear() before it is destroyed.
// Not thread-safe: one runtime per matching thread.

#include <cstdint>
#include <span>
#include <vector>

#include "nfa/compiler.h"
#include "nfa/shared_buffer.h"

namespace vigil::nfa {

inline constexpr uint64_t kNoEvent = UINT64_MAX;

struct ComputationState {
  int32_t state = -1;
  BufferNode* node = nullptr;  // the run's last taken event
  int64_t start_ms = 0;
  int64_t previous_ms = 0;  // time of the last taken event
  uint64_t start_seq = kNoEvent;
};

struct KeyNfaState {
  std::vector<ComputationState> partial;
  std::vector<ComputationState> completed;
  bool empty() const { return partial.empty() && completed.empty(); }
};

struct MatchedEvent {
  int stage;
  EventRef event;
};

// One match (or timed-out partial match): its events in order, each with its stage.
struct Match {
  std::vector<MatchedEvent> events;
  bool timed_out = false;
};

// The event being processed: conditions read the parser's scratch copy; a heap copy is made
// only when the first run takes it, and shared by every run and pattern that does.
class CurrentEvent {
 public:
  // `event` is only read: it may be shared with other matching threads. Its position in this
  // thread's processing order is `seq`, which retained copies carry.
  CurrentEvent(const Event* event, uint64_t seq) : event_(event), seq_(seq) {}
  const Event& event() const { return *event_; }
  uint64_t seq() const { return seq_; }
  const EventRef& Retained() {
    if (!retained_) {
      retained_ = event_->Retain();
      retained_->set_seq(seq_);
    }
    return retained_;
  }
  // Uses an already retained copy of the event (one that waited for the watermark).
  void Adopt(EventRef retained) {
    retained_ = std::move(retained);
    retained_->set_seq(seq_);
  }

 private:
  const Event* event_;
  uint64_t seq_;
  EventRef retained_;
};

class NfaRuntime {
 public:
  NfaRuntime();
  ~NfaRuntime();
  NfaRuntime(const NfaRuntime&) = delete;
  NfaRuntime& operator=(const NfaRuntime&) = delete;

  // Feeds `event` to the key's runs. REQUIRES: AdvanceTime(event time) was called first, and
  // events of one key arrive in sequence order. Appends matches to `*out`.
  void Process(const Nfa& nfa, KeyNfaState* state, CurrentEvent* event, std::vector<Match>* out);

  // Times out runs whose window closed at `time_ms` (reported when the pattern asks for
  // timeouts), completes trailing not_followed_by runs, and releases held matches that no
  // longer wait for an earlier run.
  void AdvanceTime(const Nfa& nfa, KeyNfaState* state, int64_t time_ms, std::vector<Match>* out);

  // End of input: every window closes; runs of a pattern without `within` are discarded.
  void Finish(const Nfa& nfa, KeyNfaState* state, std::vector<Match>* out);

  // The earliest event time at which AdvanceTime would change `state`; INT64_MAX if none.
  int64_t NextDeadline(const Nfa& nfa, const KeyNfaState& state) const;

  // State TTL, for a pattern without a window: drops the runs that started at or before
  // `cutoff_ms` and releases the matches held back for them. Returns the runs dropped.
  size_t ExpireRuns(const Nfa& nfa, KeyNfaState* state, int64_t cutoff_ms, std::vector<Match>* out);

  // Drops the oldest runs beyond `max_runs` and releases the matches held back for them;
  // returns how many runs were dropped.
  size_t EnforceLimit(const Nfa& nfa, KeyNfaState* state, size_t max_runs, std::vector<Match>* out);

  // Releases everything `state` holds.
  void Clear(KeyNfaState* state);

  const SharedBuffer& buffer() const { return buffer_; }
  // For rebuilding stored states (DecodeKeyState) that this runtime will then run.
  SharedBuffer& mutable_buffer() { return buffer_; }

 private:
  class RunView;

  void ComputeNextStates(const Nfa& nfa, const ComputationState& cs, CurrentEvent* event);
  bool Evaluate(const Nfa& nfa, const EdgeCondition& c, const Event& event);
  int FindFinalAfterProceed(const Nfa& nfa, int state, const Event& event);
  void ReleaseMatches(const Nfa& nfa, KeyNfaState* state, std::vector<Match>* out);
  void Prune(std::vector<ComputationState>* runs, uint64_t pruning_seq, bool inclusive);
  Match Extract(const ComputationState& cs, bool timed_out) const;

  SharedBuffer buffer_;
  EvalScratch scratch_;
  std::unique_ptr<RunView> view_;
  // Predicate results, valid while their generation matches: event-only predicates for the
  // whole event, stage-reading ones for one run. Both generations come from one counter.
  struct Memo {
    uint64_t generation = 0;
    bool value = false;
  };
  std::vector<Memo> memo_;
  uint64_t generation_ = 0;
  uint64_t event_generation_ = 0;
  uint64_t run_generation_ = 0;
  std::vector<int> stack_;
  std::vector<const Transition*> edges_;
  std::vector<ComputationState> results_;
  std::vector<ComputationState> next_partial_;
  std::vector<ComputationState> potential_;
};

}  // namespace vigil::nfa
