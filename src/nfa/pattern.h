#pragma once
// The pattern model and its parser: YAML or JSON documents (contract: "Pattern document") ->
// validated Pattern values with compiled conditions.
//
// Every rule of the contract and of Flink CEP's pattern API that can be checked without
// running the NFA is checked here, so every error carries the document's line and column.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nfa/condition.h"
#include "nfa/field_schema.h"

namespace vigil::nfa {

struct SourcePosition {
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based
};

struct PatternError {
  std::string source;  // file name or "<request>"
  SourcePosition position;
  std::string message;

  // "source:line:column: message"
  std::string ToString() const;
};

// How a stage follows the one before it (Flink's ConsumingStrategy). The first stage of a
// sequence (`begin`) is kRelaxed.
enum class Contiguity : uint8_t {
  kStrict,            // next
  kRelaxed,           // followed_by
  kNonDeterministic,  // followed_by_any
  kNotNext,           // not_next
  kNotFollowedBy,     // not_followed_by
};

struct Stage {
  std::string name;
  int index = -1;  // stage number used by `$NAME` and in matches; groups have one too
  SourcePosition position;
  Contiguity contiguity = Contiguity::kRelaxed;
  std::optional<Condition> where;  // absent: any event

  // Quantifier: times_min..times_max events, or times_min or more when looping.
  bool looping = false;
  bool has_times = false;  // `times` given (Flink's TIMES property)
  int times_min = 1;
  int times_max = 1;
  bool optional = false;
  bool greedy = false;
  Contiguity inner = Contiguity::kRelaxed;  // consecutive: kStrict; allow_combinations: kNonDeterministic
  std::optional<Condition> until;

  std::vector<Stage> group;  // non-empty: a group stage

  bool is_group() const { return !group.empty(); }
  bool is_negated() const {
    return contiguity == Contiguity::kNotNext || contiguity == Contiguity::kNotFollowedBy;
  }
};

struct SkipStrategy {
  enum class Kind : uint8_t { kNoSkip, kSkipToNext, kSkipPastLastEvent, kSkipToFirst, kSkipToLast };
  Kind kind = Kind::kNoSkip;
  int stage = -1;  // for kSkipToFirst / kSkipToLast
};

struct Pattern {
  std::string id;
  std::string description;
  std::string source;  // the document's text as written
  uint64_t version = 0;  // given by the store that keeps the pattern (0: not stored)
  std::optional<std::string> key;  // dotted field path
  int key_slot = -1;
  int64_t within_ms = 0;  // 0: no window
  bool within_between_previous = false;
  SkipStrategy skip;
  bool timeouts = false;
  std::vector<Stage> stages;
  std::vector<std::string> stage_names;  // by Stage::index
};

// The file extensions of pattern documents.
inline constexpr std::string_view kPatternFileExtensions[] = {".yaml", ".yml", ".json"};

struct ParsedPatterns {
  std::vector<Pattern> patterns;
  std::vector<PatternError> errors;  // at most one per rejected document
};

// Where a document comes from. New text (a request, a file) must be valid UTF-8 and free of
// YAML aliases; text stored by an earlier version is held only to the rules it was accepted
// under, so an upgrade never drops a stored pattern or its partial matches.
enum class PatternOrigin { kNew, kStored };

// Parses all pattern documents in `text`: YAML (several separated by `---`) or JSON (one
// object or an array of them). Conditions are compiled against `*schema`. `source_name` is
// used in errors. A document with any error is rejected whole; the others are returned.
ParsedPatterns ParsePatterns(std::string_view text, const std::string& source_name,
                             FieldSchema* schema, PatternOrigin origin = PatternOrigin::kNew);

}  // namespace vigil::nfa
