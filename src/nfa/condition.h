#pragma once
// Condition: the `where` / `until` expression language of the pattern contract, compiled once
// into an evaluator.
//
// Compile() parses the text, resolves every field path to a FieldSchema slot, every `$stage`
// to a stage index, and every `matches()` regex to an RE2 program, so Matches() does no
// parsing, no name lookup, and no heap allocation for comparisons and arithmetic on numbers
// and strings. Semantics (contract, "Condition language" and "Settled questions"):
//  1. A missing field, an operation across types, or an aggregate over an empty list with no
//     value yields "no value"; a condition whose result is not `true` does not match.
//  2. `&&` / `||` short-circuit as in CEL: `false && x` is false and `true || x` is true even
//     when x has no value; `!` of no value is no value.
//  3. Numbers are doubles; `5 == 5.0`.
//  4. `$NAME` is the list of events stage NAME took earlier in the partial match (MatchView).
// A compiled Condition is immutable and may be shared by many NFA states and threads;
// Matches() takes the per-thread EvalScratch.

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nfa/event.h"
#include "nfa/field_schema.h"

namespace vigil::nfa {

// What a condition reads besides the current event: the events earlier stages took.
class MatchView {
 public:
  virtual ~MatchView() = default;
  // Events taken by stage `stage` in this partial match, oldest first.
  virtual std::span<const Event* const> StageEvents(int stage) const = 0;
};

// Reusable buffers for values built during evaluation (lower(), upper(), projections such as
// `$s.amount`). One per matching thread; its memory is reused from event to event.
class EvalScratch {
 public:
  EvalScratch();
  ~EvalScratch();
  EvalScratch(const EvalScratch&) = delete;
  EvalScratch& operator=(const EvalScratch&) = delete;

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

struct ConditionError {
  size_t offset = 0;  // 0-based byte offset into the expression text
  std::string message;
};

// A necessary condition for a Condition to match: the event's field at `slot` is a string
// equal to one of `values` (sorted, unique).
struct RequiredStrings {
  int slot = -1;
  std::vector<std::string> values;
};

class Condition {
 public:
  // Resolves a stage name to its index, or returns -1 when no stage has that name.
  using StageResolver = std::function<int(std::string_view)>;

  // Compiles `text`. Field paths are interned into `*schema`. Errors: syntax, unknown
  // function, wrong number of arguments, unknown stage, invalid regular expression.
  static std::variant<Condition, ConditionError> Compile(std::string_view text,
                                                         FieldSchema* schema,
                                                         const StageResolver& stages);

  // True when the condition evaluates to boolean true for `event`. `match` may be null when
  // !reads_stages().
  bool Matches(const Event& event, const MatchView* match, EvalScratch* scratch) const;

  // True when the condition reads `$stage`: its result then depends on the partial match and
  // cannot be shared between partial matches for the same event.
  bool reads_stages() const;

  const std::string& text() const;

  // What the condition's form shows an event must have to match, one entry per field (in no
  // particular order): from `field == 'literal'` and `field in ['literal', ...]` (string
  // literals only), combined through `&&` (either side) and `||` (fields both sides require).
  // Empty when nothing is evident. Lets a caller pass over events no condition could take.
  const std::vector<RequiredStrings>& required_strings() const;

  struct Program;

 private:
  explicit Condition(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const Program> program_;
};

}  // namespace vigil::nfa
