#include "nfa/pattern.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <sstream>

#include "common/time_util.h"
#include "common/utf8.h"

namespace vigil::nfa {

std::string PatternError::ToString() const {
  std::string out = source;
  if (position.line > 0) {
    out += ':' + std::to_string(position.line) + ':' + std::to_string(position.column);
  }
  return out + ": " + message;
}

namespace {

// yaml-cpp reports problems by throwing; the parser below does too, with a position, and
// ParsePatterns turns each into a PatternError at the document boundary, so no exception
// leaves this file.
struct DocumentError {
  SourcePosition position;
  std::string message;
};

SourcePosition PositionOf(const YAML::Mark& mark) {
  if (mark.line < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

// yaml-cpp's LoadAll can loop for ever on some malformed input (found by fuzzing: a stray
// ',' after a top-level flow mapping), allocating nodes until memory runs out. This first
// pass over the parser's events stops such input before LoadAll sees it: a real document
// has fewer events than bytes (plus a few for the stream). It also refuses aliases: patterns
// have no use for them, and shared nodes would let a small document stand for a huge one.
class EventBudget : public YAML::EventHandler {
 public:
  struct Exceeded {
    SourcePosition position;
    std::string message;
  };

  EventBudget(size_t text_bytes, bool allow_aliases)
      : left_(2 * text_bytes + 16), allow_aliases_(allow_aliases) {}

  void OnDocumentStart(const YAML::Mark& mark) override { Spend(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Spend(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    if (!allow_aliases_) throw Exceeded{PositionOf(mark), "aliases (*name) are not allowed in patterns"};
    Spend(mark);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
    Spend(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Spend(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    Spend(mark);
  }
  void OnMapEnd() override {}

 private:
  void Spend(const YAML::Mark& mark) {
    if (left_-- == 0) throw Exceeded{PositionOf(mark), "malformed document: the YAML parser does not end"};
  }

  size_t left_;
  bool allow_aliases_;
};

// Runs EventBudget over `text`; throws what the parser or the budget throws.
void CheckEventBudget(const std::string& text, bool allow_aliases) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  EventBudget budget(text.size(), allow_aliases);
  while (parser.HandleNextDocument(budget)) {
  }
}

[[noreturn]] void Fail(const YAML::Node& node, std::string message) {
  throw DocumentError{PositionOf(node.Mark()), std::move(message)};
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

bool IsPatternId(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(s[0])) return false;
  for (char c : s) {
    if (!(lower_or_digit(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

std::string ScalarOf(const YAML::Node& node, const char* what) {
  if (!node.IsScalar()) Fail(node, std::string(what) + " must be a string");
  return node.Scalar();
}

bool BoolOf(const YAML::Node& node, const char* what) {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (s == "true") return true;
    if (s == "false") return false;
  }
  Fail(node, std::string(what) + " must be true or false");
}

int64_t IntOf(const YAML::Node& node, const char* what) {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) return v;
  }
  Fail(node, std::string(what) + " must be an integer");
}

// Maximum of `times` and `times_or_more`: each unit becomes an NFA state, so this bounds the
// size of a compiled pattern (a hostile `times: 1000000` is refused, not compiled).
constexpr int64_t kMaxTimes = 1000;

// Groups may nest this deep; each level is a recursion of the parser and the compiler.
constexpr int kMaxGroupDepth = 32;
// Stages in one pattern, groups and nested stages included.
constexpr size_t kMaxStages = 256;

constexpr std::string_view kContiguityKeys[] = {"begin", "next", "followed_by", "followed_by_any",
                                                "not_next", "not_followed_by"};

struct PendingCondition {
  int stage_index;
  YAML::Node node;
  bool is_until;
};

class DocumentParser {
 public:
  DocumentParser(std::string_view source_text, FieldSchema* schema)
      : text_(source_text), schema_(schema) {}

  Pattern Parse(const YAML::Node& root) {
    if (!root.IsMap()) Fail(root, "a pattern document must be a mapping");
    Pattern p;
    std::optional<YAML::Node> sequence;
    std::optional<YAML::Node> skip;
    std::set<std::string> seen;
    for (const auto& kv : root) {
      const std::string key = ScalarOf(kv.first, "a key");
      if (!seen.insert(key).second) Fail(kv.first, "duplicate key '" + key + "'");
      const YAML::Node& v = kv.second;
      if (key == "id") {
        p.id = ScalarOf(v, "id");
        if (!IsPatternId(p.id)) {
          Fail(v, "id '" + p.id + "' must match [a-z0-9][a-z0-9_.-]{0,127}");
        }
      } else if (key == "description") {
        p.description = ScalarOf(v, "description");
      } else if (key == "key") {
        p.key = ScalarOf(v, "key");
        if (p.key->empty() || p.key->front() == '.' || p.key->back() == '.' ||
            p.key->find("..") != std::string::npos) {
          Fail(v, "key must be a field path such as card_id or merchant.country");
        }
        p.key_slot = schema_->Intern(SplitFieldPath(*p.key));
      } else if (key == "within") {
        ParseWithin(v, &p);
      } else if (key == "skip") {
        skip = v;
      } else if (key == "timeouts") {
        p.timeouts = BoolOf(v, "timeouts");
      } else if (key == "sequence") {
        sequence = v;
      } else {
        Fail(kv.first, "unknown key '" + key +
                            "' (expected id, description, key, within, skip, timeouts, sequence)");
      }
    }
    if (p.id.empty()) Fail(root, "missing required key 'id'");
    if (!sequence) Fail(root, "missing required key 'sequence'");
    p.stages = ParseSequence(*sequence, /*depth=*/0, &p);
    if (!p.stages.empty() && p.stages.back().contiguity == Contiguity::kNotFollowedBy &&
        p.within_ms == 0) {
      throw DocumentError{p.stages.back().position,
                          "a pattern can end with not_followed_by only when it has 'within'"};
    }
    if (skip) ParseSkip(*skip, &p);
    CompileConditions(&p);
    return p;
  }

 private:
  void ParseWithin(const YAML::Node& v, Pattern* p) {
    std::optional<YAML::Node> time = v;
    if (v.IsMap()) {
      time.reset();
      for (const auto& kv : v) {
        const std::string key = ScalarOf(kv.first, "a key");
        if (key == "time") {
          time = kv.second;
        } else if (key == "between") {
          const std::string between = ScalarOf(kv.second, "within.between");
          if (between == "previous_and_current") {
            p->within_between_previous = true;
          } else if (between != "first_and_last") {
            Fail(kv.second, "within.between must be first_and_last or previous_and_current");
          }
        } else {
          Fail(kv.first, "unknown key '" + key + "' in within (expected time, between)");
        }
      }
      if (!time) Fail(v, "within needs 'time'");
    }
    auto ms = ParseDurationMs(ScalarOf(*time, "within"));
    if (!ms || *ms <= 0) {
      Fail(*time, "bad duration '" + time->Scalar() +
                     "' (expected a positive NNNms, NNs, NNm, NNh, NNd or milliseconds)");
    }
    p->within_ms = *ms;
  }

  void ParseSkip(const YAML::Node& v, Pattern* p) {
    using Kind = SkipStrategy::Kind;
    if (v.IsScalar()) {
      const std::string& s = v.Scalar();
      if (s == "no_skip") {
        p->skip.kind = Kind::kNoSkip;
      } else if (s == "skip_to_next") {
        p->skip.kind = Kind::kSkipToNext;
      } else if (s == "skip_past_last_event") {
        p->skip.kind = Kind::kSkipPastLastEvent;
      } else {
        Fail(v, "unknown skip strategy '" + s +
                    "' (expected no_skip, skip_to_next, skip_past_last_event, "
                    "{skip_to_first: STAGE} or {skip_to_last: STAGE})");
      }
      return;
    }
    if (!v.IsMap() || v.size() != 1) {
      Fail(v, "skip must be a strategy name or {skip_to_first: STAGE} / {skip_to_last: STAGE}");
    }
    const auto kv = *v.begin();
    const std::string kind = ScalarOf(kv.first, "a key");
    if (kind == "skip_to_first") {
      p->skip.kind = Kind::kSkipToFirst;
    } else if (kind == "skip_to_last") {
      p->skip.kind = Kind::kSkipToLast;
    } else {
      Fail(kv.first, "unknown skip strategy '" + kind + "'");
    }
    const std::string stage = ScalarOf(kv.second, "the skip stage");
    auto found = leaf_stages_.find(stage);
    if (found == leaf_stages_.end()) {
      Fail(kv.second, "skip names unknown stage '" + stage + "'");
    }
    p->skip.stage = found->second;
  }

  std::vector<Stage> ParseSequence(const YAML::Node& seq, int depth, Pattern* p) {
    const bool in_group = depth > 0;
    if (depth > kMaxGroupDepth) {
      Fail(seq, "groups nest more than " + std::to_string(kMaxGroupDepth) + " deep");
    }
    if (!seq.IsSequence() || seq.size() == 0) {
      Fail(seq, in_group ? "group must be a non-empty list of stages"
                         : "sequence must be a non-empty list of stages");
    }
    std::vector<Stage> stages;
    for (size_t i = 0; i < seq.size(); ++i) {
      stages.push_back(ParseStage(seq[i], i == 0, depth, p));
      const Stage& s = stages.back();
      if (i > 0 && s.is_negated() && stages[i - 1].optional) {
        Fail(seq[i], "a negated stage cannot follow an optional stage ('" + stages[i - 1].name +
                         "')");
      }
      if (i > 0 && s.optional && stages[i - 1].greedy) {
        Fail(seq[i], "an optional stage cannot follow a greedy stage ('" + stages[i - 1].name +
                         "')");
      }
    }
    if (in_group && stages.back().contiguity == Contiguity::kNotFollowedBy) {
      throw DocumentError{stages.back().position, "not_followed_by cannot end a group"};
    }
    return stages;
  }

  Stage ParseStage(const YAML::Node& node, bool first, int depth, Pattern* p) {
    if (!node.IsMap()) Fail(node, "a stage must be a mapping");
    Stage s;
    s.position = PositionOf(node.Mark());
    std::optional<YAML::Node> name_key, where, until, group, quantifier_node;
    std::set<std::string> seen;
    bool has_times = false, has_one_or_more = false, has_times_or_more = false;
    bool consecutive = false, allow_combinations = false;
    for (const auto& kv : node) {
      const std::string key = ScalarOf(kv.first, "a key");
      if (!seen.insert(key).second) Fail(kv.first, "duplicate key '" + key + "'");
      const YAML::Node& v = kv.second;
      bool is_contiguity = false;
      for (std::string_view c : kContiguityKeys) is_contiguity |= key == c;
      if (is_contiguity) {
        if (name_key) {
          Fail(kv.first, "a stage takes exactly one of begin, next, followed_by, "
                          "followed_by_any, not_next, not_followed_by");
        }
        name_key = kv.first;
        s.name = ScalarOf(v, "a stage name");
        if (!IsIdentifier(s.name)) {
          Fail(v, "stage name '" + s.name + "' must match [A-Za-z_][A-Za-z0-9_]*");
        }
        if (key == "begin") {
          if (!first) Fail(kv.first, "only the first stage of a sequence is 'begin'");
          s.contiguity = Contiguity::kRelaxed;
        } else {
          if (first) Fail(kv.first, "the first stage of a sequence must be 'begin: NAME'");
          s.contiguity = key == "next"              ? Contiguity::kStrict
                         : key == "followed_by"     ? Contiguity::kRelaxed
                         : key == "followed_by_any" ? Contiguity::kNonDeterministic
                         : key == "not_next"        ? Contiguity::kNotNext
                                                    : Contiguity::kNotFollowedBy;
        }
      } else if (key == "where") {
        where = v;
      } else if (key == "until") {
        until = v;
      } else if (key == "group") {
        group = v;
      } else if (key == "times") {
        has_times = true;
        quantifier_node = kv.first;
        ParseTimes(v, &s);
      } else if (key == "one_or_more") {
        has_one_or_more = BoolOf(v, "one_or_more");
        quantifier_node = kv.first;
      } else if (key == "times_or_more") {
        has_times_or_more = true;
        quantifier_node = kv.first;
        const int64_t n = IntOf(v, "times_or_more");
        if (n < 1 || n > kMaxTimes) {
          Fail(v, "times_or_more must be between 1 and " + std::to_string(kMaxTimes));
        }
        s.times_min = s.times_max = static_cast<int>(n);
      } else if (key == "optional") {
        s.optional |= BoolOf(v, "optional");
      } else if (key == "greedy") {
        s.greedy = BoolOf(v, "greedy");
      } else if (key == "consecutive") {
        consecutive = BoolOf(v, "consecutive");
      } else if (key == "allow_combinations") {
        allow_combinations = BoolOf(v, "allow_combinations");
      } else {
        Fail(kv.first, "unknown stage key '" + key + "'");
      }
    }
    if (!name_key) {
      Fail(node, first ? "the first stage of a sequence must be 'begin: NAME'"
                       : "a stage needs one of next, followed_by, followed_by_any, not_next, "
                         "not_followed_by");
    }
    if (!all_names_.insert(s.name).second) {
      Fail(*name_key, "duplicate stage name '" + s.name + "'");
    }
    if (p->stage_names.size() >= kMaxStages) {
      Fail(*name_key, "a pattern may have at most " + std::to_string(kMaxStages) + " stages");
    }
    s.index = static_cast<int>(p->stage_names.size());
    p->stage_names.push_back(s.name);

    if (has_times + has_one_or_more + has_times_or_more > 1) {
      Fail(*quantifier_node, "a stage takes at most one of times, one_or_more, times_or_more");
    }
    s.has_times = has_times;
    if (has_one_or_more) s.times_min = s.times_max = 1;
    s.looping = has_one_or_more || has_times_or_more;
    const bool quantified = s.looping || s.has_times;
    if (consecutive && allow_combinations) {
      Fail(node, "consecutive and allow_combinations cannot both be set");
    }
    if ((consecutive || allow_combinations) && !quantified) {
      Fail(node, std::string(consecutive ? "consecutive" : "allow_combinations") +
                     " applies only to a stage with times, one_or_more or times_or_more");
    }
    s.inner = consecutive          ? Contiguity::kStrict
              : allow_combinations ? Contiguity::kNonDeterministic
                                   : Contiguity::kRelaxed;
    if (s.greedy && !quantified) {
      Fail(node, "greedy applies only to a stage with times, one_or_more or times_or_more");
    }
    if (until && !s.looping) {
      Fail(*until, "until applies only to a one_or_more or times_or_more stage");
    }
    if (s.is_negated()) {
      if (quantified || s.optional || s.greedy) {
        Fail(quantifier_node ? *quantifier_node : node,
             "a negated stage (not_next, not_followed_by) takes no quantifier, optional or greedy");
      }
      if (group) Fail(*group, "a negated stage cannot be a group");
    }
    if (group && where) Fail(*where, "a group stage takes 'group' instead of 'where'");
    if (group) {
      s.group = ParseSequence(*group, depth + 1, p);
    } else {
      leaf_stages_[s.name] = s.index;
      if (where) pending_.push_back({s.index, *where, false});
    }
    if (until) pending_.push_back({s.index, *until, true});
    return s;
  }

  void ParseTimes(const YAML::Node& v, Stage* s) {
    int64_t lo, hi;
    if (v.IsSequence()) {
      if (v.size() != 2) Fail(v, "times must be N or [MIN, MAX]");
      lo = IntOf(v[0], "times MIN");
      hi = IntOf(v[1], "times MAX");
      if (lo < 0 || hi < 1 || lo > hi) Fail(v, "times [MIN, MAX] needs 0 <= MIN <= MAX and MAX >= 1");
    } else {
      lo = hi = IntOf(v, "times");
      if (lo < 1) Fail(v, "times must be at least 1");
    }
    if (hi > kMaxTimes) Fail(v, "times may not exceed " + std::to_string(kMaxTimes));
    if (lo == 0) {  // contract: times [0, N] is times [1, N] plus optional
      lo = 1;
      s->optional = true;
    }
    s->times_min = static_cast<int>(lo);
    s->times_max = static_cast<int>(hi);
  }

  static Stage* FindStage(std::vector<Stage>& stages, int index) {
    for (Stage& s : stages) {
      if (s.index == index) return &s;
      if (Stage* inner = FindStage(s.group, index)) return inner;
    }
    return nullptr;
  }

  void CompileConditions(Pattern* p) {
    const Condition::StageResolver resolver = [this](std::string_view name) {
      auto it = leaf_stages_.find(std::string(name));
      return it == leaf_stages_.end() ? -1 : it->second;
    };
    for (const PendingCondition& pc : pending_) {
      const std::string text = ScalarOf(pc.node, pc.is_until ? "until" : "where");
      auto compiled = Condition::Compile(text, schema_, resolver);
      if (auto* err = std::get_if<ConditionError>(&compiled)) {
        throw DocumentError{PositionInSource(pc.node, text, err->offset), err->message};
      }
      Stage* s = FindStage(p->stages, pc.stage_index);
      (pc.is_until ? s->until : s->where) = std::move(std::get<Condition>(compiled));
    }
  }

  // Where byte `offset` of a scalar's value sits in the document. The scalar's text is
  // searched from its node's mark, which is exact for plain and quoted one-line scalars and
  // for block scalars whose lines are kept as written.
  SourcePosition PositionInSource(const YAML::Node& node, const std::string& value,
                                  size_t offset) const {
    const YAML::Mark mark = node.Mark();
    if (mark.pos < 0 || static_cast<size_t>(mark.pos) > text_.size()) return PositionOf(mark);
    const std::string_view first_line = std::string_view(value).substr(0, value.find('\n'));
    size_t start = text_.find(first_line, static_cast<size_t>(mark.pos));
    if (start == std::string_view::npos || first_line.empty()) return PositionOf(mark);
    size_t target = start + std::min(offset, first_line.size());
    if (offset > first_line.size()) {
      // Later lines of a block scalar: find the same line in the source.
      size_t line_start = value.rfind('\n', offset - 1) + 1;
      std::string_view line = std::string_view(value).substr(line_start);
      line = line.substr(0, line.find('\n'));
      size_t at = text_.find(line, start);
      if (at != std::string_view::npos) target = at + (offset - line_start);
    }
    SourcePosition pos{1, 1};
    for (size_t i = 0; i < target && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++pos.line;
        pos.column = 1;
      } else {
        ++pos.column;
      }
    }
    return pos;
  }

  std::string_view text_;
  FieldSchema* schema_;
  std::set<std::string> all_names_;
  std::map<std::string, int> leaf_stages_;
  std::vector<PendingCondition> pending_;
};

}  // namespace

ParsedPatterns ParsePatterns(std::string_view text, const std::string& source_name,
                             FieldSchema* schema, PatternOrigin origin) {
  ParsedPatterns out;
  const bool strict = origin == PatternOrigin::kNew;
  // Pattern text is kept and served back inside JSON, where invalid bytes are replaced.
  if (const size_t bad = strict ? FindInvalidUtf8(text) : std::string_view::npos; bad != std::string_view::npos) {
    const std::string_view before = text.substr(0, bad);
    const size_t line_start = before.rfind('\n');
    const int column = static_cast<int>(line_start == std::string_view::npos ? bad : bad - line_start - 1);
    out.errors.push_back({source_name,
                          {static_cast<int>(std::count(before.begin(), before.end(), '\n')) + 1, column + 1},
                          "not valid UTF-8"});
    return out;
  }
  std::vector<YAML::Node> documents;
  try {
    const std::string owned(text);
    CheckEventBudget(owned, /*allow_aliases=*/!strict);
    for (const YAML::Node& doc : YAML::LoadAll(owned)) {
      if (doc.IsSequence()) {
        for (const YAML::Node& element : doc) documents.push_back(element);
      } else if (!doc.IsNull()) {
        documents.push_back(doc);
      }
    }
  } catch (const EventBudget::Exceeded& e) {
    out.errors.push_back({source_name, e.position, e.message});
    return out;
  } catch (const YAML::DeepRecursion& e) {
    out.errors.push_back({source_name, PositionOf(e.mark), "nested too deeply"});
    return out;
  } catch (const YAML::Exception& e) {
    out.errors.push_back({source_name, PositionOf(e.mark), e.msg});
    return out;
  }
  if (documents.empty()) {
    out.errors.push_back({source_name, {}, "no pattern document found"});
    return out;
  }
  for (size_t i = 0; i < documents.size(); ++i) {
    try {
      DocumentParser parser(text, schema);
      Pattern p = parser.Parse(documents[i]);
      if (documents.size() == 1) {
        p.source = std::string(text);
      } else {
        const auto begin = static_cast<size_t>(std::max(0, documents[i].Mark().pos));
        const size_t end = i + 1 < documents.size()
                               ? static_cast<size_t>(std::max(0, documents[i + 1].Mark().pos))
                               : text.size();
        p.source = std::string(text.substr(begin, end > begin ? end - begin : 0));
      }
      out.patterns.push_back(std::move(p));
    } catch (const DocumentError& e) {
      out.errors.push_back({source_name, e.position, e.message});
    } catch (const YAML::Exception& e) {
      out.errors.push_back({source_name, PositionOf(e.mark), e.msg});
    }
  }
  return out;
}

}  // namespace vigil::nfa
