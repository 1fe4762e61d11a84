#include "nfa/compiler.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>

namespace vigil::nfa {
namespace {

// One stage in its sequence, linked to the stage before it: the shape Flink's compiler walks
// (Pattern.getPrevious()). A group stage also links to the last stage of its inner sequence.
struct Link {
  const Stage* stage;
  const Link* previous;
  const Link* group_last;
};

EdgeConditionPtr True() {
  static const EdgeConditionPtr kTrue = std::make_shared<EdgeCondition>();
  return kTrue;
}
EdgeConditionPtr Not(EdgeConditionPtr c) {
  return std::make_shared<EdgeCondition>(
      EdgeCondition{EdgeCondition::Op::kNot, -1, std::move(c), nullptr});
}
EdgeConditionPtr And(EdgeConditionPtr a, EdgeConditionPtr b) {
  return std::make_shared<EdgeCondition>(
      EdgeCondition{EdgeCondition::Op::kAnd, -1, std::move(a), std::move(b)});
}

}  // namespace

namespace internal {

// Ported from Flink's NFAFactoryCompiler, method for method, so that the graph (and hence
// every match) is Flink's. Names in comments are Flink's.
class GraphBuilder {
 public:
  explicit GraphBuilder(Nfa* nfa) : nfa_(nfa) {}

  Status Build(const Pattern& pattern) {
    window_ms_ = pattern.within_between_previous ? 0 : pattern.within_ms;
    has_window_ = pattern.within_ms > 0;
    current_ = BuildChain(pattern.stages);
    const int sink = CreateState("$end$", -1, NfaState::Kind::kFinal);
    const int first = CreateMiddleStates(sink);
    const int start = ConvertPattern(first);
    nfa_->states_[start].start = true;
    nfa_->start_state_ = start;
    nfa_->window_ms_ = window_ms_;
    nfa_->gap_window_ms_ = pattern.within_between_previous ? pattern.within_ms : 0;
    if (static_cast<int>(nfa_->states_.size()) > NfaCompiler::kMaxStates) {
      return Status::InvalidArgument("pattern '" + pattern.id + "' compiles to " +
                                     std::to_string(nfa_->states_.size()) +
                                     " NFA states, more than the limit of " +
                                     std::to_string(NfaCompiler::kMaxStates));
    }
    return Status::Ok();
  }

 private:
  const Link* BuildChain(const std::vector<Stage>& stages) {
    const Link* previous = nullptr;
    for (const Stage& s : stages) {
      const Link* group_last = s.is_group() ? BuildChain(s.group) : nullptr;
      links_.push_back(Link{&s, previous, group_last});
      previous = &links_.back();
    }
    return previous;
  }

  // --- graph primitives ---------------------------------------------------------------------

  int CreateState(const std::string& name, int stage, NfaState::Kind kind) {
    NfaState s;
    s.name = name;
    s.stage = stage;
    s.kind = kind;
    nfa_->states_.push_back(std::move(s));
    return static_cast<int>(nfa_->states_.size()) - 1;
  }
  NfaState& S(int i) { return nfa_->states_[i]; }
  void Add(int source, Action action, int target, EdgeConditionPtr c) {
    S(source).transitions.push_back(Transition{action, source, target, std::move(c)});
  }
  bool IsFinal(int s) { return S(s).kind == NfaState::Kind::kFinal; }

  EdgeConditionPtr Predicate(const Condition& c) {
    auto [it, inserted] = predicate_index_.emplace(&c, static_cast<int>(nfa_->predicates_.size()));
    if (inserted) nfa_->predicates_.push_back(&c);
    return std::make_shared<EdgeCondition>(
        EdgeCondition{EdgeCondition::Op::kPredicate, it->second, nullptr, nullptr});
  }

  // --- quantifier properties (Flink's Quantifier) ---------------------------------------------

  static bool Looping(const Link* p) { return p->stage->looping; }
  static bool Times(const Link* p) { return p->stage->has_times; }
  static bool Optional(const Link* p) { return p->stage->optional; }
  static bool Greedy(const Link* p) { return p->stage->greedy; }
  static Contiguity Consuming(const Link* p) { return p->stage->contiguity; }
  static Contiguity InnerConsuming(const Link* p) { return p->stage->inner; }
  bool IsGroup(const Link* p) const { return p->group_last != nullptr; }

  // --- conditions (getTakeCondition and friends) ---------------------------------------------

  EdgeConditionPtr GroupUntil() {
    if (current_group_ && current_group_->stage->until) {
      return Predicate(*current_group_->stage->until);
    }
    return nullptr;
  }

  // extendWithUntilCondition
  static EdgeConditionPtr ExtendWithUntil(EdgeConditionPtr c, EdgeConditionPtr until,
                                          bool is_take) {
    if (until && c) return And(Not(until), c);
    if (until && is_take) return Not(until);
    return c;
  }

  EdgeConditionPtr TakeCondition(const Link* p) {
    EdgeConditionPtr c = p->stage->where ? Predicate(*p->stage->where) : True();
    return ExtendWithUntil(c, GroupUntil(), true);
  }

  EdgeConditionPtr TrueFunction() { return ExtendWithUntil(True(), GroupUntil(), true); }

  EdgeConditionPtr IgnoreFor(Contiguity strategy, const Link* p) {
    switch (strategy) {
      case Contiguity::kStrict:
        return nullptr;
      case Contiguity::kNonDeterministic:
        return True();
      default:
        return Not(p->stage->where ? Predicate(*p->stage->where) : True());
    }
  }

  EdgeConditionPtr InnerIgnoreCondition(const Link* p) {
    Contiguity strategy = InnerConsuming(p);
    if (HeadOfGroup(p)) strategy = InnerConsuming(current_group_);
    EdgeConditionPtr c = IgnoreFor(strategy, p);
    return ExtendWithUntil(c, GroupUntil(), false);
  }

  EdgeConditionPtr IgnoreCondition(const Link* p) {
    Contiguity strategy = Consuming(p);
    if (HeadOfGroup(p)) {
      strategy = IsCurrentGroupFirstOfLoop() ? Consuming(current_group_)
                                             : InnerConsuming(current_group_);
    }
    EdgeConditionPtr c = IgnoreFor(strategy, p);
    return ExtendWithUntil(c, GroupUntil(), false);
  }

  // --- groups ---------------------------------------------------------------------------------

  void SetCurrentGroupFirstOfLoop(bool first) {
    if (IsGroup(current_)) first_of_loop_[current_] = first;
  }
  bool IsCurrentGroupFirstOfLoop() const {
    auto it = first_of_loop_.find(current_group_);
    return it == first_of_loop_.end() ? true : it->second;
  }
  bool HeadOfGroup(const Link* p) const { return current_group_ && p->previous == nullptr; }
  bool IsPatternOptional(const Link* p) const {
    if (HeadOfGroup(p)) return IsCurrentGroupFirstOfLoop() && Optional(current_group_);
    return Optional(p);
  }

  // --- negation -------------------------------------------------------------------------------

  int CreateStopState(EdgeConditionPtr not_condition, const std::string& name, int stage) {
    auto it = stop_states_.find(name);
    if (it != stop_states_.end()) return it->second;
    const int stop = CreateState(name, stage, NfaState::Kind::kStop);
    Add(stop, Action::kTake, stop, std::move(not_condition));
    stop_states_[name] = stop;
    return stop;
  }

  struct NotCondition {
    EdgeConditionPtr condition;
    const Link* pattern;
  };

  // getCurrentNotCondition: the not_followed_by stages before the current stage, looking back
  // across optional stages.
  std::vector<NotCondition> CurrentNotConditions() {
    std::vector<NotCondition> nots;
    const Link* p = current_;
    while (p->previous &&
           (Optional(p->previous) || Consuming(p->previous) == Contiguity::kNotFollowedBy)) {
      p = p->previous;
      if (Consuming(p) == Contiguity::kNotFollowedBy) nots.push_back({TakeCondition(p), p});
    }
    return nots;
  }

  void AddStopStates(int state) {
    for (const NotCondition& n : CurrentNotConditions()) {
      const int stop = CreateStopState(n.condition, n.pattern->stage->name, n.pattern->stage->index);
      Add(state, Action::kProceed, stop, n.condition);
    }
  }

  void AddStopStateToLooping(int state) {
    if (following_ && Consuming(following_) == Contiguity::kNotFollowedBy) {
      EdgeConditionPtr c = TakeCondition(following_);
      const int stop = CreateStopState(c, following_->stage->name, following_->stage->index);
      Add(state, Action::kProceed, stop, c);
    }
  }

  // copyWithoutTransitiveNots: taking an event in an optional stage ends the not_followed_by
  // stages before it, so the take leads to a copy of the sink without their Stop edges.
  int CopyWithoutTransitiveNots(int sink) {
    const std::vector<NotCondition> nots = CurrentNotConditions();
    if (nots.empty() || !Optional(current_)) return sink;
    const int copy = CreateState(S(sink).name, S(sink).stage, S(sink).kind);
    const std::vector<Transition> transitions = S(sink).transitions;
    for (const Transition& t : transitions) {
      if (t.action == Action::kProceed) {
        int target = t.target;
        bool remove = false;
        if (S(target).kind == NfaState::Kind::kStop) {
          for (const NotCondition& n : nots) remove |= S(target).name == n.pattern->stage->name;
        } else {
          target = CopyWithoutTransitiveNots(target);
        }
        if (!remove) Add(copy, t.action, target, t.condition);
      } else {
        Add(copy, t.action, t.target == t.source ? copy : t.target, t.condition);
      }
    }
    return copy;
  }

  // --- stages ---------------------------------------------------------------------------------

  int CreateMiddleStates(int sink) {
    int last_sink = sink;
    while (current_->previous) {
      const Contiguity c = Consuming(current_);
      if (c == Contiguity::kNotFollowedBy) {
        // Before the end it only adds Stop edges to its neighbours. At the end (with a
        // window) it waits in a Pending state until the window closes.
        if (has_window_ && IsFinal(last_sink)) {
          const int pending = CreateState(current_->stage->name, current_->stage->index,
                                          NfaState::Kind::kPending);
          EdgeConditionPtr not_condition = TakeCondition(current_);
          const int stop =
              CreateStopState(not_condition, current_->stage->name, current_->stage->index);
          Add(pending, Action::kProceed, stop, not_condition);
          Add(pending, Action::kIgnore, pending, Not(not_condition));
          last_sink = pending;
        }
      } else if (c == Contiguity::kNotNext) {
        const int not_next =
            CreateState(current_->stage->name, current_->stage->index, NfaState::Kind::kNormal);
        EdgeConditionPtr not_condition = TakeCondition(current_);
        const int stop =
            CreateStopState(not_condition, current_->stage->name, current_->stage->index);
        if (IsFinal(last_sink)) {
          // An IGNORE, not a PROCEED, so that the match completes only on the next event.
          Add(not_next, Action::kIgnore, last_sink, Not(not_condition));
        } else {
          Add(not_next, Action::kProceed, last_sink, Not(not_condition));
        }
        Add(not_next, Action::kProceed, stop, not_condition);
        last_sink = not_next;
      } else {
        last_sink = ConvertPattern(last_sink);
      }
      following_ = current_;
      current_ = current_->previous;
    }
    return last_sink;
  }

  int ConvertPattern(int sink) {
    int last_sink;
    if (Looping(current_)) {
      SetCurrentGroupFirstOfLoop(false);
      const int sink_copy = CopyWithoutTransitiveNots(sink);
      const int looping = CreateLooping(sink_copy);
      SetCurrentGroupFirstOfLoop(true);
      last_sink = CreateTimesState(looping, sink, current_->stage->times_min,
                                   current_->stage->times_max);
    } else if (Times(current_)) {
      last_sink = CreateTimesState(sink, sink, current_->stage->times_min,
                                   current_->stage->times_max);
    } else {
      last_sink = CreateSingletonState(sink, sink, TakeCondition(current_),
                                       IgnoreCondition(current_), IsPatternOptional(current_));
    }
    AddStopStates(last_sink);
    return last_sink;
  }

  // The PROCEED edge from a loop or optional stage to the stage after it. A greedy stage
  // with `until` also gets a PROCEED, taken when the until event arrives, to an unrestricted
  // copy of the next stage (the original is restricted by UpdateWithGreedyCondition); a loop
  // makes that copy, the optional first state of its quantifier reuses it.
  void AddProceedToNext(int state, int next, bool copy_next) {
    EdgeConditionPtr proceed = TrueFunction();
    const bool greedy_until = Greedy(current_) && current_->stage->until;
    if (!greedy_until) {
      Add(state, Action::kProceed, next, proceed);
      return;
    }
    EdgeConditionPtr until = Predicate(*current_->stage->until);
    if (copy_next) original_state_[next] = Copy(next);
    auto original = original_state_.find(next);
    if (original != original_state_.end()) {
      Add(state, Action::kProceed, original->second, And(proceed, until));
    }
    Add(state, Action::kProceed, next, And(proceed, Not(until)));
  }

  // copy(): the same state with the same edges (self edges point at the copy).
  int Copy(int state) {
    const int copy = CreateState(S(state).name, S(state).stage, S(state).kind);
    const std::vector<Transition> transitions = S(state).transitions;
    for (const Transition& t : transitions) {
      Add(copy, t.action, t.target == t.source ? copy : t.target, t.condition);
    }
    return copy;
  }

  // updateWithGreedyCondition: after a greedy times [MIN, MAX], the next stage may take only
  // events the loop would not.
  void UpdateWithGreedyCondition(int state, EdgeConditionPtr take) {
    for (Transition& t : S(state).transitions) t.condition = And(t.condition, Not(take));
  }

  int CreateTimesState(int sink, int proceed, int from, int to) {
    int last_sink = sink;
    SetCurrentGroupFirstOfLoop(false);
    EdgeConditionPtr until = current_->stage->until ? Predicate(*current_->stage->until) : nullptr;
    EdgeConditionPtr inner_ignore = ExtendWithUntil(InnerIgnoreCondition(current_), until, false);
    EdgeConditionPtr take = ExtendWithUntil(TakeCondition(current_), until, true);
    if (Greedy(current_) && from != to) {
      if (until) original_state_[sink] = Copy(sink);
      UpdateWithGreedyCondition(sink, take);
    }
    for (int i = from; i < to; ++i) {
      last_sink = CreateSingletonState(last_sink, proceed, take, inner_ignore, true);
      AddStopStateToLooping(last_sink);
    }
    for (int i = 0; i < from - 1; ++i) {
      last_sink = CreateSingletonState(last_sink, -1, take, inner_ignore, false);
      AddStopStateToLooping(last_sink);
    }
    SetCurrentGroupFirstOfLoop(true);
    return CreateSingletonState(last_sink, proceed, take, IgnoreCondition(current_),
                                Optional(current_));
  }

  int CreateSingletonState(int sink, int proceed, EdgeConditionPtr take, EdgeConditionPtr ignore,
                           bool optional) {
    if (IsGroup(current_)) return CreateGroupPatternState(sink, proceed, optional);
    const Stage& st = *current_->stage;
    const int singleton = CreateState(st.name, st.index, NfaState::Kind::kNormal);
    const int take_target = CopyWithoutTransitiveNots(sink);
    Add(singleton, Action::kTake, take_target, take);

    if (optional && !HeadOfGroup(current_)) AddProceedToNext(singleton, proceed, false);
    if (ignore) {
      int ignore_state;
      if (optional) {
        // A twin without the PROCEED edge, so each skipped event does not branch again.
        ignore_state = CreateState(st.name, st.index, NfaState::Kind::kNormal);
        Add(ignore_state, Action::kTake, take_target, take);
        Add(ignore_state, Action::kIgnore, ignore_state, ignore);
        AddStopStates(ignore_state);
      } else {
        ignore_state = singleton;
      }
      Add(singleton, Action::kIgnore, ignore_state, ignore);
    }
    return singleton;
  }

  // Saves and restores the walk's cursor around the inner sequence (Flink does the same).
  struct Cursor {
    const Link* current;
    const Link* following;
    const Link* group;
  };
  Cursor Save() const { return {current_, following_, current_group_}; }
  void Restore(const Cursor& c) {
    current_ = c.current;
    following_ = c.following;
    current_group_ = c.group;
  }

  int CreateGroupPatternState(int sink, int proceed, bool optional) {
    const Cursor saved = Save();
    current_group_ = current_;
    current_ = current_->group_last;
    int last_sink = CreateMiddleStates(sink);
    last_sink = ConvertPattern(last_sink);
    if (optional) Add(last_sink, Action::kProceed, proceed, TrueFunction());
    Restore(saved);
    return last_sink;
  }

  int CreateLoopingGroupPatternState(int sink) {
    const Cursor saved = Save();
    const int dummy = CreateState(current_->stage->name, current_->stage->index,
                                  NfaState::Kind::kNormal);
    current_group_ = current_;
    current_ = current_->group_last;
    int last_sink = CreateMiddleStates(dummy);
    last_sink = ConvertPattern(last_sink);
    EdgeConditionPtr proceed_condition = TrueFunction();
    Add(last_sink, Action::kProceed, sink, proceed_condition);
    Add(dummy, Action::kProceed, last_sink, proceed_condition);
    Restore(saved);
    return last_sink;
  }

  int CreateLooping(int sink) {
    if (IsGroup(current_)) return CreateLoopingGroupPatternState(sink);
    const Stage& st = *current_->stage;
    EdgeConditionPtr until = st.until ? Predicate(*st.until) : nullptr;
    EdgeConditionPtr ignore = ExtendWithUntil(InnerIgnoreCondition(current_), until, false);
    EdgeConditionPtr take = ExtendWithUntil(TakeCondition(current_), until, true);
    const int looping = CreateState(st.name, st.index, NfaState::Kind::kNormal);
    AddProceedToNext(looping, sink, true);
    if (Greedy(current_)) UpdateWithGreedyCondition(sink, TakeCondition(current_));
    Add(looping, Action::kTake, looping, take);
    AddStopStateToLooping(looping);
    if (ignore) {
      const int ignore_state = CreateState(st.name, st.index, NfaState::Kind::kNormal);
      Add(ignore_state, Action::kTake, looping, take);
      Add(ignore_state, Action::kIgnore, ignore_state, ignore);
      Add(looping, Action::kIgnore, ignore_state, ignore);
      AddStopStateToLooping(ignore_state);
    }
    return looping;
  }

  Nfa* nfa_;
  std::deque<Link> links_;
  std::map<const Condition*, int> predicate_index_;
  std::map<std::string, int> stop_states_;
  std::map<const Link*, bool> first_of_loop_;
  const Link* current_ = nullptr;
  const Link* following_ = nullptr;
  const Link* current_group_ = nullptr;
  std::map<int, int> original_state_;  // Flink's originalStateMap, by state index
  int64_t window_ms_ = 0;
  bool has_window_ = false;
};

}  // namespace internal

namespace {

enum class Known : uint8_t { kFalse, kTrue, kUnknown };

// What `c` is for an event that every predicate marked in `rejected` rejects.
Known ValueWhenRejected(const EdgeCondition& c, const std::vector<bool>& rejected) {
  switch (c.op) {
    case EdgeCondition::Op::kTrue:
      return Known::kTrue;
    case EdgeCondition::Op::kPredicate:
      return rejected[c.predicate] ? Known::kFalse : Known::kUnknown;
    case EdgeCondition::Op::kNot: {
      const Known v = ValueWhenRejected(*c.lhs, rejected);
      if (v == Known::kUnknown) return v;
      return v == Known::kTrue ? Known::kFalse : Known::kTrue;
    }
    case EdgeCondition::Op::kAnd: {
      const Known l = ValueWhenRejected(*c.lhs, rejected);
      const Known r = ValueWhenRejected(*c.rhs, rejected);
      if (l == Known::kFalse || r == Known::kFalse) return Known::kFalse;
      return l == Known::kTrue && r == Known::kTrue ? Known::kTrue : Known::kUnknown;
    }
  }
  return Known::kUnknown;
}

// Whether such an event leaves every run as it was and starts none, as the runtime walks the
// graph (NfaRuntime::ComputeNextStates): no TAKE or PROCEED edge fires, and a run's state has
// exactly one IGNORE edge that fires, back to itself (none would end the run: strict
// contiguity; two would split it). The start state holds no run, and ignoring there starts
// nothing.
bool LeavesRunsAlone(const Nfa& nfa, const std::vector<bool>& rejected) {
  for (size_t s = 0; s < nfa.states().size(); ++s) {
    const NfaState& state = nfa.state(static_cast<int>(s));
    if (state.kind == NfaState::Kind::kFinal || state.kind == NfaState::Kind::kStop) continue;
    const bool is_start = static_cast<int>(s) == nfa.start_state();
    int kept_in_place = 0;
    for (const Transition& t : state.transitions) {
      const Known v = ValueWhenRejected(*t.condition, rejected);
      if (v == Known::kFalse || (is_start && t.action == Action::kIgnore)) continue;
      if (t.action != Action::kIgnore || v != Known::kTrue || t.target != t.source) return false;
      ++kept_in_place;
    }
    if (!is_start && kept_in_place != 1) return false;
  }
  return true;
}

// Tries each field some predicate requires strings of: the first for which every event outside
// those strings leaves the runs alone.
std::optional<EventFilter> FindEventFilter(const Nfa& nfa) {
  // A passed-over event does not move its key's time: its runs' windows close later, at their
  // timers, and several may then close at once. Only reported timeouts tell that apart: a run
  // that times out in the same step in which an earlier run completes is reported, where
  // closing the windows one by one would have pruned it first (skip strategy).
  const Pattern& pattern = nfa.pattern();
  if (pattern.timeouts && pattern.skip.kind != SkipStrategy::Kind::kNoSkip) return std::nullopt;
  const std::vector<const Condition*>& predicates = nfa.predicates();
  std::vector<int> slots;
  for (const Condition* c : predicates) {
    for (const RequiredStrings& r : c->required_strings()) {
      if (std::find(slots.begin(), slots.end(), r.slot) == slots.end()) slots.push_back(r.slot);
    }
  }
  for (const int slot : slots) {
    EventFilter filter{slot, {}};
    std::vector<bool> rejected(predicates.size(), false);
    for (size_t i = 0; i < predicates.size(); ++i) {
      for (const RequiredStrings& r : predicates[i]->required_strings()) {
        if (r.slot != slot) continue;
        rejected[i] = true;
        filter.Allow(r.values);
      }
    }
    if (LeavesRunsAlone(nfa, rejected)) return filter;
  }
  return std::nullopt;
}

}  // namespace

Result<std::shared_ptr<const Nfa>> NfaCompiler::Compile(std::shared_ptr<const Pattern> pattern) {
  auto nfa = std::make_shared<Nfa>();
  nfa->pattern_ = pattern;
  internal::GraphBuilder builder(nfa.get());
  if (Status s = builder.Build(*pattern); !s.ok()) return s;
  nfa->event_filter_ = FindEventFilter(*nfa);
  return std::shared_ptr<const Nfa>(std::move(nfa));
}

}  // namespace vigil::nfa
