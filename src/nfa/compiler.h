#pragma once
// NfaCompiler: Pattern -> Nfa, the immutable state graph that the runtime (nfa.h) walks.
//
// The graph is Flink CEP's (NFACompiler): built backwards from a Final state; each stage
// becomes one or more States with TAKE, IGNORE and PROCEED transitions whose conditions are
// boolean combinations of the stage's compiled `where` / `until` (EdgeCondition); negations
// become transitions to Stop states; a trailing not_followed_by under `within` becomes a
// Pending state that completes when the window closes. Semantics follow Flink edge for edge,
// so that matches are Flink's; see compiler.cc for the construction of each quantifier.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "nfa/condition.h"
#include "nfa/pattern.h"

namespace vigil::nfa {

// A boolean combination of stage conditions, evaluated for one event in one partial match.
struct EdgeCondition {
  enum class Op : uint8_t { kTrue, kPredicate, kNot, kAnd };
  Op op = Op::kTrue;
  int predicate = -1;  // index into Nfa::predicates() for kPredicate
  std::shared_ptr<const EdgeCondition> lhs, rhs;
};
using EdgeConditionPtr = std::shared_ptr<const EdgeCondition>;

enum class Action : uint8_t { kTake, kIgnore, kProceed };

struct Transition {
  Action action;
  int source;
  int target;
  EdgeConditionPtr condition;
};

struct NfaState {
  enum class Kind : uint8_t { kNormal, kFinal, kStop, kPending };
  std::string name;  // the stage's name (several states may share one)
  int stage = -1;    // Stage::index of the stage whose events this state takes
  Kind kind = Kind::kNormal;
  bool start = false;
  std::vector<Transition> transitions;
};

// The events that can change a pattern's state: those whose field at `slot` is a string among
// `values` (sorted, unique). Any other event takes no edge, starts no run and leaves every run
// where it is, so matching may pass it over: same runs, same matches.
struct EventFilter {
  int slot = -1;
  std::vector<std::string> values;

  // Lets `more` values through too (values stays sorted and unique).
  void Allow(const std::vector<std::string>& more) {
    values.insert(values.end(), more.begin(), more.end());
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
  }

  bool Passes(const Event& event) const {
    const Value& v = event.field(slot);
    if (v.kind != Value::Kind::kString) return false;
    const std::string_view s = v.string();
    if (values.size() > kScanned) return std::binary_search(values.begin(), values.end(), s);
    for (const std::string& value : values) {
      if (value == s) return true;
    }
    return false;
  }

 private:
  static constexpr size_t kScanned = 8;  // longer lists are searched
};

namespace internal {
class GraphBuilder;
}  // namespace internal

// The compiled pattern. Immutable once built; shared by every key and thread.
class Nfa {
 public:
  const std::vector<NfaState>& states() const { return states_; }
  const NfaState& state(int i) const { return states_[i]; }
  int start_state() const { return start_state_; }
  // `within` between first and last event; 0 when absent.
  int64_t window_ms() const { return window_ms_; }
  // `within` between consecutive events (previous_and_current); 0 when absent.
  int64_t gap_window_ms() const { return gap_window_ms_; }
  bool has_window() const { return window_ms_ > 0 || gap_window_ms_ > 0; }
  const std::vector<const Condition*>& predicates() const { return predicates_; }
  const Pattern& pattern() const { return *pattern_; }
  // Which events can change this pattern's state, when the conditions say (each edge that
  // could fire requires one field to hold one of a few strings, `type == 'login'` typically,
  // and every other edge keeps a run where it is); nullopt: any event may.
  const std::optional<EventFilter>& event_filter() const { return event_filter_; }

 private:
  friend class NfaCompiler;
  friend class internal::GraphBuilder;
  std::shared_ptr<const Pattern> pattern_;
  std::vector<NfaState> states_;
  std::vector<const Condition*> predicates_;  // point into *pattern_
  std::optional<EventFilter> event_filter_;
  int start_state_ = -1;
  int64_t window_ms_ = 0;
  int64_t gap_window_ms_ = 0;
};

class NfaCompiler {
 public:
  // Bounds the graph of one pattern (hostile quantifiers compile to many states).
  static constexpr int kMaxStates = 4096;

  // Compiles `pattern`. Errors: kInvalidArgument when the graph would exceed kMaxStates.
  static Result<std::shared_ptr<const Nfa>> Compile(std::shared_ptr<const Pattern> pattern);
};

}  // namespace vigil::nfa
