#include "nfa/nfa.h"

#include <algorithm>

#include "common/time_util.h"

namespace vigil::nfa {
namespace {

// now - since >= window, without overflow at the ends of time.
bool Elapsed(int64_t now, int64_t since, int64_t window) {
  return SaturatingSub(now, since) >= window;
}

bool StartsBefore(const ComputationState& a, const ComputationState& b) {
  return a.start_seq < b.start_seq;
}

}  // namespace

// The events of one run grouped by stage, built lazily the first time a condition reads
// `$stage` for that run, from buffers reused across runs.
class NfaRuntime::RunView : public MatchView {
 public:
  void Reset(const BufferNode* node) {
    node_ = node;
    built_ = false;
  }

  std::span<const Event* const> StageEvents(int stage) const override {
    if (!built_) Build();
    if (static_cast<size_t>(stage) >= by_stage_.size()) return {};
    return by_stage_[stage];
  }

 private:
  void Build() const {
    for (auto& events : by_stage_) events.clear();
    for (const BufferNode* n = node_; n; n = n->previous) {
      if (static_cast<size_t>(n->stage) >= by_stage_.size()) by_stage_.resize(n->stage + 1);
      by_stage_[n->stage].push_back(n->event.get());
    }
    for (auto& events : by_stage_) std::reverse(events.begin(), events.end());
    built_ = true;
  }

  const BufferNode* node_ = nullptr;
  mutable bool built_ = false;
  mutable std::vector<std::vector<const Event*>> by_stage_;
};

NfaRuntime::NfaRuntime() : view_(std::make_unique<RunView>()) {}
NfaRuntime::~NfaRuntime() = default;

bool NfaRuntime::Evaluate(const Nfa& nfa, const EdgeCondition& c, const Event& event) {
  switch (c.op) {
    case EdgeCondition::Op::kTrue:
      return true;
    case EdgeCondition::Op::kNot:
      return !Evaluate(nfa, *c.lhs, event);
    case EdgeCondition::Op::kAnd:
      return Evaluate(nfa, *c.lhs, event) && Evaluate(nfa, *c.rhs, event);
    case EdgeCondition::Op::kPredicate:
      break;
  }
  const Condition& condition = *nfa.predicates()[c.predicate];
  if (memo_.size() < nfa.predicates().size()) memo_.resize(nfa.predicates().size());
  Memo& memo = memo_[c.predicate];
  const uint64_t generation = condition.reads_stages() ? run_generation_ : event_generation_;
  if (memo.generation != generation) {
    memo.value = condition.Matches(event, view_.get(), &scratch_);
    memo.generation = generation;
  }
  return memo.value;
}

int NfaRuntime::FindFinalAfterProceed(const Nfa& nfa, int state, const Event& event) {
  const size_t base = stack_.size();
  stack_.push_back(state);
  int found = -1;
  while (stack_.size() > base && found < 0) {
    const int s = stack_.back();
    stack_.pop_back();
    for (const Transition& t : nfa.state(s).transitions) {
      if (t.action != Action::kProceed || !Evaluate(nfa, *t.condition, event)) continue;
      if (nfa.state(t.target).kind == NfaState::Kind::kFinal) {
        found = t.target;
        break;
      }
      stack_.push_back(t.target);
    }
  }
  stack_.resize(base);
  return found;
}

// Flink's computeNextStates: follow PROCEED edges whose condition holds, then apply every
// TAKE and IGNORE edge reached. Results go to results_.
void NfaRuntime::ComputeNextStates(const Nfa& nfa, const ComputationState& cs,
                                   CurrentEvent* current) {
  const Event& event = current->event();
  run_generation_ = ++generation_;
  view_->Reset(cs.node);

  edges_.clear();
  stack_.clear();
  stack_.push_back(cs.state);
  while (!stack_.empty()) {
    const int s = stack_.back();
    stack_.pop_back();
    for (const Transition& t : nfa.state(s).transitions) {
      if (!Evaluate(nfa, *t.condition, event)) continue;
      if (t.action == Action::kProceed) {
        stack_.push_back(t.target);
      } else {
        edges_.push_back(&t);
      }
    }
  }

  const bool is_start = cs.state == nfa.start_state();
  // The first result that keeps the run's node takes over the run's hold on it, so a run that
  // only skips the event never touches its node (most often a cache miss).
  bool hold_passed_on = false;
  for (const Transition* t : edges_) {
    if (t->action == Action::kIgnore) {
      if (is_start) continue;  // the start state never skips: a new run starts on each event
      if (hold_passed_on) SharedBuffer::Lock(cs.node);
      hold_passed_on = true;
      results_.push_back({t->target, cs.node, cs.start_ms, cs.previous_ms, cs.start_seq});
      continue;
    }
    BufferNode* node = buffer_.Put(current->Retained(), nfa.state(t->source).stage, cs.node);
    const int64_t start_ms = is_start ? event.time_ms() : cs.start_ms;
    const uint64_t start_seq = is_start ? current->seq() : cs.start_seq;
    SharedBuffer::Lock(node);
    results_.push_back({t->target, node, start_ms, event.time_ms(), start_seq});
    const int final_state = FindFinalAfterProceed(nfa, t->target, event);
    if (final_state >= 0) {
      SharedBuffer::Lock(node);
      results_.push_back({final_state, node, start_ms, event.time_ms(), start_seq});
    }
  }
  if (!hold_passed_on) buffer_.Release(cs.node);
}

void NfaRuntime::Process(const Nfa& nfa, KeyNfaState* state, CurrentEvent* current,
                         std::vector<Match>* out) {
  event_generation_ = ++generation_;
  next_partial_.clear();
  potential_.clear();

  auto step = [&](const ComputationState& cs) {
    results_.clear();
    ComputeNextStates(nfa, cs, current);
    const size_t kept_from = next_partial_.size();
    bool reached_stop = false;
    for (const ComputationState& r : results_) {
      switch (nfa.state(r.state).kind) {
        case NfaState::Kind::kFinal:
          potential_.push_back(r);
          break;
        case NfaState::Kind::kStop:
          reached_stop = true;
          buffer_.Release(r.node);
          break;
        default:
          next_partial_.push_back(r);
      }
    }
    if (reached_stop) {
      // A negated stage matched: the whole branch of this run dies (Flink discards the path).
      for (size_t i = kept_from; i < next_partial_.size(); ++i) buffer_.Release(next_partial_[i].node);
      next_partial_.resize(kept_from);
    }
  };
  for (const ComputationState& cs : state->partial) step(cs);
  ComputationState start;
  start.state = nfa.start_state();
  step(start);

  // Copied, not swapped: each key keeps a buffer sized for its own runs, and the runtime
  // keeps one sized for the largest, so neither reallocates from event to event.
  state->partial.assign(next_partial_.begin(), next_partial_.end());
  if (nfa.pattern().skip.kind == SkipStrategy::Kind::kNoSkip) {
    for (const ComputationState& m : potential_) {
      out->push_back(Extract(m, false));
      buffer_.Release(m.node);
    }
    potential_.clear();  // handed out: a later ReleaseMatches (ExpireRuns) must not see them
  } else {
    ReleaseMatches(nfa, state, out);
  }
}

// Flink's processMatchesAccordingToSkipStrategy: moves potential_ into the held matches, then
// emits held matches in start order while no run that started earlier is alive, pruning runs
// and held matches as the skip strategy says.
void NfaRuntime::ReleaseMatches(const Nfa& nfa, KeyNfaState* state, std::vector<Match>* out) {
  if (!potential_.empty()) {
    std::stable_sort(potential_.begin(), potential_.end(), StartsBefore);
    const size_t middle = state->completed.size();
    state->completed.insert(state->completed.end(), potential_.begin(), potential_.end());
    std::inplace_merge(state->completed.begin(), state->completed.begin() + middle,
                       state->completed.end(), StartsBefore);
    potential_.clear();
  }
  const SkipStrategy& skip = nfa.pattern().skip;
  while (!state->completed.empty()) {
    const ComputationState m = state->completed.front();
    if (!state->partial.empty() && state->partial.front().start_seq < m.start_seq) break;
    state->completed.erase(state->completed.begin());
    Match match = Extract(m, false);
    uint64_t pruning = kNoEvent;
    bool inclusive = true;
    switch (skip.kind) {
      case SkipStrategy::Kind::kNoSkip:
        break;
      case SkipStrategy::Kind::kSkipToNext:
        pruning = match.events.front().event->seq();
        break;
      case SkipStrategy::Kind::kSkipPastLastEvent:
        pruning = match.events.back().event->seq();
        break;
      case SkipStrategy::Kind::kSkipToFirst:
      case SkipStrategy::Kind::kSkipToLast: {
        inclusive = false;
        for (const MatchedEvent& e : match.events) {
          if (e.stage != skip.stage) continue;
          if (pruning == kNoEvent || skip.kind == SkipStrategy::Kind::kSkipToLast) {
            pruning = e.event->seq();
          }
        }
        // Skipping to the match's own first event skips nothing (contract).
        if (pruning == match.events.front().event->seq()) pruning = kNoEvent;
        break;
      }
    }
    if (pruning != kNoEvent) {
      Prune(&state->partial, pruning, inclusive);
      Prune(&state->completed, pruning, inclusive);
    }
    out->push_back(std::move(match));
    buffer_.Release(m.node);
  }
}

void NfaRuntime::Prune(std::vector<ComputationState>* runs, uint64_t pruning_seq, bool inclusive) {
  auto pruned = [&](const ComputationState& cs) {
    const bool prune = inclusive ? cs.start_seq <= pruning_seq : cs.start_seq < pruning_seq;
    if (prune) buffer_.Release(cs.node);
    return prune;
  };
  runs->erase(std::remove_if(runs->begin(), runs->end(), pruned), runs->end());
}

void NfaRuntime::AdvanceTime(const Nfa& nfa, KeyNfaState* state, int64_t time_ms,
                             std::vector<Match>* out) {
  if (!nfa.has_window()) return;
  next_partial_.clear();
  potential_.clear();
  for (const ComputationState& cs : state->partial) {
    const bool timed_out = (nfa.window_ms() > 0 && Elapsed(time_ms, cs.start_ms, nfa.window_ms())) ||
                           (nfa.gap_window_ms() > 0 &&
                            Elapsed(time_ms, cs.previous_ms, nfa.gap_window_ms()));
    if (!timed_out) {
      next_partial_.push_back(cs);
      continue;
    }
    if (nfa.state(cs.state).kind == NfaState::Kind::kPending) {
      potential_.push_back(cs);  // the negated event did not come in time: a match
      continue;
    }
    if (nfa.pattern().timeouts) out->push_back(Extract(cs, true));
    buffer_.Release(cs.node);
  }
  state->partial.assign(next_partial_.begin(), next_partial_.end());
  ReleaseMatches(nfa, state, out);
}

void NfaRuntime::Finish(const Nfa& nfa, KeyNfaState* state, std::vector<Match>* out) {
  if (nfa.has_window()) {
    AdvanceTime(nfa, state, INT64_MAX, out);
    return;
  }
  for (const ComputationState& cs : state->partial) buffer_.Release(cs.node);
  state->partial.clear();
  potential_.clear();
  ReleaseMatches(nfa, state, out);
}

int64_t NfaRuntime::NextDeadline(const Nfa& nfa, const KeyNfaState& state) const {
  int64_t deadline = INT64_MAX;
  for (const ComputationState& cs : state.partial) {
    if (nfa.window_ms() > 0) deadline = std::min(deadline, SaturatingAdd(cs.start_ms, nfa.window_ms()));
    if (nfa.gap_window_ms() > 0) {
      deadline = std::min(deadline, SaturatingAdd(cs.previous_ms, nfa.gap_window_ms()));
    }
  }
  return deadline;
}

size_t NfaRuntime::EnforceLimit(const Nfa& nfa, KeyNfaState* state, size_t max_runs,
                                std::vector<Match>* out) {
  if (state->partial.size() <= max_runs) return 0;
  const size_t excess = state->partial.size() - max_runs;
  for (size_t i = 0; i < excess; ++i) buffer_.Release(state->partial[i].node);
  state->partial.erase(state->partial.begin(), state->partial.begin() + excess);
  // A match held back for a dropped run goes out now, not with the key's next event (which
  // an event filter may pass over).
  ReleaseMatches(nfa, state, out);
  return excess;
}

size_t NfaRuntime::ExpireRuns(const Nfa& nfa, KeyNfaState* state, int64_t cutoff_ms,
                              std::vector<Match>* out) {
  // Runs are in the order of their first event, so those to expire come first.
  size_t expired = 0;
  while (expired < state->partial.size() && state->partial[expired].start_ms <= cutoff_ms) {
    buffer_.Release(state->partial[expired].node);
    ++expired;
  }
  if (expired == 0) return 0;
  state->partial.erase(state->partial.begin(), state->partial.begin() + static_cast<ptrdiff_t>(expired));
  ReleaseMatches(nfa, state, out);
  return expired;
}

void NfaRuntime::Clear(KeyNfaState* state) {
  for (const ComputationState& cs : state->partial) buffer_.Release(cs.node);
  for (const ComputationState& cs : state->completed) buffer_.Release(cs.node);
  state->partial.clear();
  state->completed.clear();
}

Match NfaRuntime::Extract(const ComputationState& cs, bool timed_out) const {
  Match match;
  match.timed_out = timed_out;
  for (const BufferNode* n = cs.node; n; n = n->previous) match.events.push_back({n->stage, n->event});
  std::reverse(match.events.begin(), match.events.end());
  return match;
}

}  // namespace vigil::nfa
