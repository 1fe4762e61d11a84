#include "nfa/condition.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nfa/event_parser.h"
#include "support/counted_allocations.h"

TEST_SUITE_BEGIN("nfa");

namespace vigil::nfa {
namespace {

// The stages the tests' resolver knows, by index.
const std::vector<std::string> kStages = {"small", "large", "none"};
constexpr int kSmall = 0;
constexpr int kLarge = 1;

int ResolveStage(std::string_view name) {
  for (size_t i = 0; i < kStages.size(); ++i) {
    if (kStages[i] == name) return static_cast<int>(i);
  }
  return -1;
}

// An event with a bit of everything; most tests read it.
const std::string kEvent = R"({
  "amount": 5.0, "count": 3, "idx": 1, "neg": -7,
  "name": "Ada Lovelace", "first": "Ada", "last": "Lovelace", "country": "NL", "code": "A123",
  "word": "h\u00e9llo", "empty_string": "",
  "flag": true, "off": false, "nothing": null,
  "tags": ["a", "b", "c"], "nums": [1, 2, 3.5], "empty": [], "mixed": [1, "x"],
  "objs": [{"a": 1}],
  "merchant": {"country": "NL", "city": "Amsterdam", "tags": ["x"]},
  "odd name": 1, "in": 2
})";

// A MatchView over events the test parsed.
class FakeMatch : public MatchView {
 public:
  void Add(int stage, const Event* e) { stages_[stage].push_back(e); }
  std::span<const Event* const> StageEvents(int stage) const override { return stages_[stage]; }

 private:
  std::vector<const Event*> stages_[3];
};

// Compiles conditions against one schema and parses events with it. Compile first, parse
// after: an event only holds the fields the schema knew when it was parsed.
class Env {
 public:
  Condition Compile(std::string_view text) {
    auto result = Condition::Compile(text, &schema_, ResolveStage);
    if (const auto* error = std::get_if<ConditionError>(&result)) {
      FAIL("compile error in '", text, "' at ", error->offset, ": ", error->message);
    }
    return std::get<Condition>(std::move(result));
  }

  ConditionError Error(std::string_view text) {
    auto result = Condition::Compile(text, &schema_, ResolveStage);
    if (std::holds_alternative<Condition>(result)) FAIL("expected a compile error: ", text);
    return std::get<ConditionError>(std::move(result));
  }

  // Parses a JSON object, adding `"ts": 0` when it has no time field.
  const Event* Parse(std::string json) {
    if (json.find("\"ts\"") == std::string::npos) {
      const size_t brace = json.find('{');
      REQUIRE(brace != std::string::npos);
      const bool empty = json.find_first_not_of(" \n\t", brace + 1) == json.find('}', brace);
      json.insert(brace + 1, empty ? "\"ts\": 0" : "\"ts\": 0, ");
    }
    EventParser parser(&schema_, "ts");
    const size_t size = json.size();
    json.append(simdjson::SIMDJSON_PADDING, '\0');
    Event scratch;
    const Status status = parser.Parse(std::string_view(json.data(), size), json.size(), &scratch);
    REQUIRE_MESSAGE(status.ok(), status.message());
    events_.push_back(scratch.Retain());
    return events_.back().get();
  }

  // "true", "false", or "no value" (neither the expression nor its negation is true; also
  // what a non-boolean result reads as).
  std::string Eval(const std::string& text, const std::string& json = kEvent,
                   const MatchView* match = nullptr) {
    const Condition positive = Compile(text);
    const Condition negative = Compile("!(" + text + ")");
    const Event* event = Parse(json);
    if (positive.Matches(*event, match, &scratch_)) return "true";
    if (negative.Matches(*event, match, &scratch_)) return "false";
    return "no value";
  }

  bool Matches(const Condition& c, const Event& e, const MatchView* match = nullptr) {
    return c.Matches(e, match, &scratch_);
  }

  FieldSchema& schema() { return schema_; }
  EvalScratch& scratch() { return scratch_; }

 private:
  FieldSchema schema_;
  EvalScratch scratch_;
  std::deque<EventRef> events_;
};

// ---- Literals and operators ----------------------------------------------------------------

TEST_CASE("Condition: compares numbers across int and decimal") {
  Env env;
  CHECK(env.Eval("5 == 5.0") == "true");
  CHECK(env.Eval("amount == 5") == "true");  // 5.0 in the event
  CHECK(env.Eval("count == 3.0") == "true");
  CHECK(env.Eval("amount != 5") == "false");
  CHECK(env.Eval("amount < 5.5") == "true");
  CHECK(env.Eval("amount <= 5") == "true");
  CHECK(env.Eval("amount > 4.99") == "true");
  CHECK(env.Eval("amount >= 5.01") == "false");
  CHECK(env.Eval("neg < 0") == "true");
  CHECK(env.Eval("1e3 == 1000") == "true");
  CHECK(env.Eval("2.5E-1 == 0.25") == "true");
  CHECK(env.Eval("0.1 + 0.2 > 0.3") == "true");  // doubles, honestly
}

TEST_CASE("Condition: a literal on either side of a comparison") {
  // `literal OP field` is evaluated as `field OP' literal`; the mirrored operator must agree.
  Env env;
  CHECK(env.Eval("4 < amount") == "true");
  CHECK(env.Eval("5 <= amount") == "true");
  CHECK(env.Eval("6 > amount") == "true");
  CHECK(env.Eval("5 >= amount") == "true");
  CHECK(env.Eval("5 == amount") == "true");
  CHECK(env.Eval("5 != amount") == "false");
  CHECK(env.Eval("6 <= amount") == "false");
  CHECK(env.Eval("'NM' > country") == "true");
  CHECK(env.Eval("'NL' == country") == "true");
  CHECK(env.Eval("null == nothing") == "true");
  CHECK(env.Eval("true == flag") == "true");
  CHECK(env.Eval("5 < missing") == "no value");
  CHECK(env.Eval("'5' < amount") == "no value");
  CHECK(env.Eval("null != country") == "no value");
}

TEST_CASE("Condition: literals") {
  Env env;
  CHECK(env.Eval("true") == "true");
  CHECK(env.Eval("false") == "false");
  CHECK(env.Eval("null == null") == "true");
  CHECK(env.Eval("[1, 2, 'x'] == [1, 2, 'x']") == "true");
  CHECK(env.Eval("[1, 2,] == [1, 2]") == "true");  // trailing comma, as in CEL
  CHECK(env.Eval("[] == []") == "true");
  CHECK(env.Eval("[1] == [1, 2]") == "false");
  CHECK(env.Eval("[1, 'a'] == [1, 2]") == "false");  // element types differ: unequal
  CHECK(env.Eval("[[1, 2], [3]] == [[1, 2], [3]]") == "true");
  CHECK(env.Eval("007 == 7") == "true");
  CHECK(env.Eval("'a' == \"a\"") == "true");
  CHECK(env.Eval("  amount\n  >\t4  ") == "true");  // whitespace of every kind
}

TEST_CASE("Condition: string escapes") {
  Env env;
  CHECK(env.Eval(R"('it\'s' == "it's")") == "true");
  CHECK(env.Eval(R"("say \"hi\"" == 'say "hi"')") == "true");
  CHECK(env.Eval(R"(size('a\\b') == 3)") == "true");
  CHECK(env.Eval(R"(size('a\nb\tc\r') == 6)") == "true");
  CHECK(env.Eval(R"('a\nb' != 'anb')") == "true");
  CHECK(env.Eval(R"('\u00e9' == 'é')") == "true");
  CHECK(env.Eval(R"('\u20AC' == '€')") == "true");
  CHECK(env.Eval(R"('\'' + "\"" == '\'"')") == "true");
}

TEST_CASE("Condition: strings are UTF-8") {
  Env env;
  CHECK(env.Eval("word == 'héllo'") == "true");  // the event spells it as a JSON escape
  CHECK(env.Eval("size(word) == 5") == "true");   // code points, not bytes
  CHECK(env.Eval("size('日本語') == 3") == "true");
  CHECK(env.Eval("size('😀') == 1") == "true");
  CHECK(env.Eval("word.startsWith('hé')") == "true");
  CHECK(env.Eval("word.contains('é')") == "true");
  CHECK(env.Eval("'é' > 'z'") == "true");  // byte order is code point order
  CHECK(env.Eval("word.upper() == 'HÉLLO'") == "true");
  CHECK(env.Eval("'ÉCOLE Ŀ Ÿ'.lower() == 'école ŀ ÿ'") == "true");
  CHECK(env.Eval("'Привет Ёж'.upper() == 'ПРИВЕТ ЁЖ'") == "true");
  CHECK(env.Eval("'ΣΟΦΊΑ'.lower() == 'σοφΊα'") == "true");  // accented Greek left as is
  CHECK(env.Eval("'straße'.upper() == 'STRAßE'") == "true");  // ß has no one-letter upper
  CHECK(env.Eval("'日本 abc'.upper() == '日本 ABC'") == "true");
  CHECK(env.Eval("'Łódź Čeština'.lower() == 'łódź čeština'") == "true");
  CHECK(env.Eval("'łódź čeština'.upper() == 'ŁÓDŹ ČEŠTINA'") == "true");
}

TEST_CASE("Condition: compares strings lexicographically") {
  Env env;
  CHECK(env.Eval("'abc' < 'abd'") == "true");
  CHECK(env.Eval("'ab' < 'abc'") == "true");
  CHECK(env.Eval("'' < 'a'") == "true");
  CHECK(env.Eval("'Z' < 'a'") == "true");
  CHECK(env.Eval("'b' <= 'b'") == "true");
  CHECK(env.Eval("'b' >= 'c'") == "false");
  CHECK(env.Eval("name > 'Ada'") == "true");
  CHECK(env.Eval("country == 'NL'") == "true");
  CHECK(env.Eval("country != 'NL'") == "false");
  CHECK(env.Eval("empty_string == ''") == "true");
  CHECK(env.Eval("name + name == 'Ada LovelaceAda Lovelace'") == "true");  // past 16 bytes
  CHECK(env.Eval("name + name == 'Ada LovelaceAda Lovelacf'") == "false");
}

TEST_CASE("Condition: bools and null compare by equality only") {
  Env env;
  CHECK(env.Eval("flag == true") == "true");
  CHECK(env.Eval("off != true") == "true");
  CHECK(env.Eval("nothing == null") == "true");
  CHECK(env.Eval("nothing != null") == "false");
  CHECK(env.Eval("true < false") == "no value");
  CHECK(env.Eval("flag >= off") == "no value");
  CHECK(env.Eval("null < null") == "no value");
  CHECK(env.Eval("[1] < [2]") == "no value");
}

TEST_CASE("Condition: a comparison across types has no value") {
  Env env;
  // The contract: such a comparison makes the condition false, so its negation is false too.
  CHECK(env.Eval("amount == 'x'") == "no value");
  CHECK(env.Eval("amount != 'x'") == "no value");
  CHECK(env.Eval("amount < 'x'") == "no value");
  CHECK(env.Eval("'5' == 5") == "no value");
  CHECK(env.Eval("null == 0") == "no value");
  CHECK(env.Eval("country == null") == "no value");
  CHECK(env.Eval("flag == 1") == "no value");
  CHECK(env.Eval("tags == 'a'") == "no value");
  CHECK(env.Eval("merchant == 'NL'") == "no value");  // an object is opaque
  CHECK(env.Eval("event == event") == "no value");     // so is an event
}

TEST_CASE("Condition: a missing field has no value, propagated") {
  Env env;
  CHECK(env.Eval("missing < 5") == "no value");
  CHECK(env.Eval("missing == missing") == "no value");
  CHECK(env.Eval("missing == null") == "no value");
  CHECK(env.Eval("missing + 1 == 1") == "no value");
  CHECK(env.Eval("-missing < 0") == "no value");
  CHECK(env.Eval("!missing") == "no value");
  CHECK(env.Eval("missing") == "no value");
  CHECK(env.Eval("missing.deeper.still == 1") == "no value");
  CHECK(env.Eval("merchant.missing == 'x'") == "no value");
  CHECK(env.Eval("missing.startsWith('a')") == "no value");
  CHECK(env.Eval("abs(missing) == 1") == "no value");
}

TEST_CASE("Condition: && and || short-circuit as in CEL") {
  Env env;
  CHECK(env.Eval("false && missing > 1") == "false");
  CHECK(env.Eval("missing > 1 && false") == "false");  // false wins from either side
  CHECK(env.Eval("true && missing > 1") == "no value");
  CHECK(env.Eval("missing > 1 && true") == "no value");
  CHECK(env.Eval("true || missing > 1") == "true");
  CHECK(env.Eval("missing > 1 || true") == "true");
  CHECK(env.Eval("false || missing > 1") == "no value");
  CHECK(env.Eval("missing > 1 || false") == "no value");
  CHECK(env.Eval("amount > 1 && country == 'NL'") == "true");
  CHECK(env.Eval("amount > 1 && country == 'BE'") == "false");
  CHECK(env.Eval("amount > 9 || country == 'BE'") == "false");
  CHECK(env.Eval("amount > 9 || country == 'NL'") == "true");
  CHECK(env.Eval("1 && true") == "no value");  // non-bool operands have no value
  CHECK(env.Eval("1 || true") == "true");
  CHECK(env.Eval("'x' && false") == "false");
  // Short-circuit on a field: the right side is never evaluated into an error.
  CHECK(env.Eval("off && 1 / 0 == 1") == "false");
  CHECK(env.Eval("flag || 1 / 0 == 1") == "true");
}

TEST_CASE("Condition: ! negates booleans only") {
  Env env;
  CHECK(env.Eval("!false") == "true");
  CHECK(env.Eval("!!true") == "true");
  CHECK(env.Eval("!flag") == "false");
  CHECK(env.Eval("!off") == "true");
  CHECK(env.Eval("!1") == "no value");
  CHECK(env.Eval("!nothing") == "no value");
  CHECK(env.Eval("!(amount > 9)") == "true");
  CHECK(env.Eval("!(amount == 'x')") == "no value");
}

TEST_CASE("Condition: arithmetic on numbers") {
  Env env;
  CHECK(env.Eval("amount + 1 == 6") == "true");
  CHECK(env.Eval("amount - 7 == -2") == "true");
  CHECK(env.Eval("amount * 2 == 10") == "true");
  CHECK(env.Eval("amount / 2 == 2.5") == "true");
  CHECK(env.Eval("7 % 3 == 1") == "true");
  CHECK(env.Eval("neg % 3 == -1") == "true");  // fmod: the sign of the dividend
  CHECK(env.Eval("7.5 % 2 == 1.5") == "true");
  CHECK(env.Eval("amount / 0 == 1") == "no value");
  CHECK(env.Eval("amount % 0 == 1") == "no value");
  CHECK(env.Eval("-amount == -5") == "true");
  CHECK(env.Eval("--amount == 5") == "true");
  CHECK(env.Eval("- -5 == 5") == "true");
  CHECK(env.Eval("'a' + 1 == 1") == "no value");
  CHECK(env.Eval("true + 1 == 2") == "no value");
  CHECK(env.Eval("'a' - 'a' == 0") == "no value");
  CHECK(env.Eval("-'a' == 'a'") == "no value");
  CHECK(env.Eval("nothing * 2 == 0") == "no value");
  CHECK(env.Eval("amount > 100 * 0.01") == "true");
}

TEST_CASE("Condition: + concatenates strings") {
  Env env;
  CHECK(env.Eval("first + ' ' + last == name") == "true");
  CHECK(env.Eval("'a' + 'b' == 'ab'") == "true");
  CHECK(env.Eval("'' + '' == ''") == "true");
  CHECK(env.Eval("(first + last).lower() == 'adalovelace'") == "true");
  CHECK(env.Eval("first + 1 == 'Ada1'") == "no value");
}

TEST_CASE("Condition: long concatenations stay valid as the scratch grows") {
  // Each piece is larger than the scratch's first chunk, so later allocations in the same
  // evaluation open new chunks while views into the earlier ones are still in use.
  Env env;
  const std::string s(300, 'x');
  const Condition c = env.Compile("((s + s) + (s + s)).upper() + s == t && s + '!' == u");
  const Event* e = env.Parse(R"({"s": ")" + s + R"(", "t": ")" + std::string(1200, 'X') + s +
                             R"(", "u": ")" + s + R"(!"})");
  for (int i = 0; i < 3; ++i) CHECK(env.Matches(c, *e));
}

TEST_CASE("Condition: operator precedence follows CEL") {
  Env env;
  CHECK(env.Eval("1 + 2 * 3 == 7") == "true");
  CHECK(env.Eval("(1 + 2) * 3 == 9") == "true");
  CHECK(env.Eval("10 - 4 - 3 == 3") == "true");  // left to right
  CHECK(env.Eval("8 / 4 / 2 == 1") == "true");
  CHECK(env.Eval("7 - 6 % 4 == 5") == "true");
  CHECK(env.Eval("-2 * 3 == -6") == "true");
  CHECK(env.Eval("true || false && false") == "true");  // && binds tighter than ||
  CHECK(env.Eval("(true || false) && false") == "false");
  CHECK(env.Eval("!false == true") == "true");  // (!false) == true
  CHECK(env.Eval("1 < 2 == true") == "true");   // (1 < 2) == true
  CHECK(env.Eval("1 + 1 in [2]") == "true");    // + binds tighter than in
  CHECK(env.Eval("amount > 1 && amount < 9 || missing") == "true");
}

// ---- Fields ---------------------------------------------------------------------------------

TEST_CASE("Condition: reads fields by name, dotted path, and event[...]") {
  Env env;
  CHECK(env.Eval("merchant.country == 'NL'") == "true");
  CHECK(env.Eval("merchant.city.startsWith('Am')") == "true");
  CHECK(env.Eval("event.amount == 5") == "true");
  CHECK(env.Eval("event.merchant.country == 'NL'") == "true");
  CHECK(env.Eval("event['odd name'] == 1") == "true");
  CHECK(env.Eval("event['merchant']['country'] == 'NL'") == "true");
  CHECK(env.Eval("event['merchant'].city == 'Amsterdam'") == "true");
  CHECK(env.Eval("merchant['city'] == 'Amsterdam'") == "true");
  CHECK(env.Eval("event['in'] == 2") == "true");      // a keyword as a field name
  CHECK(env.Eval("count == 3") == "true");            // a function name, not called
  CHECK(env.Eval("'x' in merchant.tags") == "true");
  CHECK(env.Eval("flag") == "true");
  CHECK(env.Eval("off") == "false");
  CHECK(env.Eval("amount") == "no value");  // not a bool
  CHECK(env.Eval("event") == "no value");
  CHECK(env.Eval("merchant") == "no value");
  CHECK(env.Eval("(merchant).city == 'Amsterdam'") == "no value");  // an object is opaque
}

TEST_CASE("Condition: keywords after a dot are field names") {
  Env env;
  CHECK(env.Eval("a.in == 1 && a.true == 2 && a.null == 3",
                 R"({"a": {"in": 1, "true": 2, "null": 3}})") == "true");
}

TEST_CASE("Condition: field paths are interned into the schema") {
  Env env;
  const int before = env.schema().size();
  env.Compile("merchant.country == 'x' && event['odd name'] > 1 && has(a.b) && amount > 1");
  CHECK(env.schema().size() == before + 4);
  env.Compile("merchant.country == 'y' && event.amount < 2");
  CHECK(env.schema().size() == before + 4);  // already known
}

TEST_CASE("Condition: a failed compile leaves the schema untouched") {
  Env env;
  const int before = env.schema().size();
  env.Error("merchant.country == 'x' && foo(1)");
  env.Error("new.field > 1 &&");
  CHECK(env.schema().size() == before);
}

TEST_CASE("Condition: has() tests that a field exists") {
  Env env;
  CHECK(env.Eval("has(amount)") == "true");
  CHECK(env.Eval("has(nothing)") == "true");  // null is a value
  CHECK(env.Eval("has(missing)") == "false");
  CHECK(env.Eval("has(merchant.country)") == "true");
  CHECK(env.Eval("has(merchant.zip)") == "false");
  CHECK(env.Eval("has(amount.deeper)") == "false");
  CHECK(env.Eval("has(event.amount)") == "true");
  CHECK(env.Eval("has(event['odd name'])") == "true");
  CHECK(env.Eval("has(merchant)") == "true");
  CHECK(env.Eval("!has(missing) && has(flag)") == "true");
}

// ---- in, lists, indexing ------------------------------------------------------------------

TEST_CASE("Condition: in tests membership by value") {
  Env env;
  CHECK(env.Eval("country in ['NL', 'BE']") == "true");
  CHECK(env.Eval("country in ['DE', 'BE']") == "false");
  CHECK(env.Eval("3 in [1, 2, 3.0]") == "true");
  CHECK(env.Eval("amount in [1, 5]") == "true");
  CHECK(env.Eval("'b' in tags") == "true");
  CHECK(env.Eval("'z' in tags") == "false");
  CHECK(env.Eval("3.5 in nums") == "true");
  CHECK(env.Eval("'x' in empty") == "false");
  CHECK(env.Eval("5 in ['5']") == "false");  // elements of another type just do not match
  CHECK(env.Eval("'x' in mixed && 1 in mixed") == "true");
  CHECK(env.Eval("null in [1, null]") == "true");
  CHECK(env.Eval("flag in [false, true]") == "true");
  CHECK(env.Eval("[1, 2] in [[1, 2], [3]]") == "true");
  CHECK(env.Eval("country in [first, last, 'NL']") == "true");  // built per event
  CHECK(env.Eval("country in [first, missing]") == "false");
  CHECK(env.Eval("missing in ['a']") == "no value");
  CHECK(env.Eval("'a' in missing") == "no value");
  CHECK(env.Eval("'a' in 'abc'") == "no value");
  CHECK(env.Eval("'a' in merchant") == "no value");
  CHECK(env.Eval("1 in objs") == "false");
}

TEST_CASE("Condition: in over a long literal list uses a lookup table") {
  Env env;
  const std::string countries = "['AT', 'BE', 'CH', 'DE', 'DK', 'ES', 'FR', 'IT', 'NL', 'PL']";
  CHECK(env.Eval("country in " + countries) == "true");
  CHECK(env.Eval("first in " + countries) == "false");
  CHECK(env.Eval("amount in " + countries) == "false");
  CHECK(env.Eval("missing in " + countries) == "no value");
  const std::string mixed = "[1, 2, 3, 4, 5.0, 'x', 'y', null, true, -0.0]";
  CHECK(env.Eval("amount in " + mixed) == "true");
  CHECK(env.Eval("count in " + mixed) == "true");
  CHECK(env.Eval("6 in " + mixed) == "false");
  CHECK(env.Eval("0 in " + mixed) == "true");
  CHECK(env.Eval("nothing in " + mixed) == "true");
  CHECK(env.Eval("flag in " + mixed) == "true");
  CHECK(env.Eval("off in " + mixed) == "false");
  CHECK(env.Eval("'y' in " + mixed) == "true");
  CHECK(env.Eval("tags in " + mixed) == "false");
  CHECK(env.Eval("'NL' in " + countries) == "true");  // folded at compile time
  const std::string many =
      "['a', 'bb', 'ccc', 'NL', 'NL', 'dddd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', '', "
      "'a rather long string past sixteen bytes', 'Ada Lovelace', 'Ada Lovelac']";
  CHECK(env.Eval("country in " + many) == "true");
  CHECK(env.Eval("name in " + many) == "true");
  CHECK(env.Eval("empty_string in " + many) == "true");
  CHECK(env.Eval("first in " + many) == "false");
  CHECK(env.Eval("code in " + many) == "false");
  CHECK(env.Eval("'a rather long string past sixteen bytes' in " + many) == "true");
  CHECK(env.Eval("'a rather long string past sixteen bytez' in " + many) == "false");
  std::string numbers = "[";
  for (int i = 0; i < 100; ++i) numbers += std::to_string(i * 2) + ", ";
  numbers += "0.5]";
  CHECK(env.Eval("count * 2 in " + numbers) == "true");
  CHECK(env.Eval("count in " + numbers) == "false");
  CHECK(env.Eval("amount / 10 in " + numbers) == "true");
}

TEST_CASE("Condition: indexes lists, negative from the end") {
  Env env;
  CHECK(env.Eval("[1, 2, 3][0] == 1") == "true");
  CHECK(env.Eval("[1, 2, 3][-1] == 3") == "true");
  CHECK(env.Eval("tags[0] == 'a'") == "true");
  CHECK(env.Eval("tags[-1] == 'c'") == "true");
  CHECK(env.Eval("tags[idx] == 'b'") == "true");
  CHECK(env.Eval("tags[idx + 1] == 'c'") == "true");
  CHECK(env.Eval("tags[3] == 'a'") == "no value");
  CHECK(env.Eval("tags[-4] == 'a'") == "no value");
  CHECK(env.Eval("tags[0.5] == 'a'") == "no value");
  CHECK(env.Eval("tags[missing] == 'a'") == "no value");
  CHECK(env.Eval("tags['x'] == 'a'") == "no value");  // a path tags.x, which is absent
  CHECK(env.Eval("empty[0] == 1") == "no value");
  CHECK(env.Eval("name[0] == 'A'") == "no value");  // strings are not lists
  CHECK(env.Eval("[[1, 2], [3]][0][1] == 2") == "true");
  CHECK(env.Eval("[amount, 7][0] == 5") == "true");
}

// ---- Functions and methods ------------------------------------------------------------------

TEST_CASE("Condition: aggregate functions over lists") {
  Env env;
  CHECK(env.Eval("count(nums) == 3") == "true");
  CHECK(env.Eval("sum(nums) == 6.5") == "true");
  CHECK(env.Eval("avg([1, 2, 6]) == 3") == "true");
  CHECK(env.Eval("min(nums) == 1") == "true");
  CHECK(env.Eval("max(nums) == 3.5") == "true");
  CHECK(env.Eval("min([3, -1, 2]) == -1 && max([-3, -1, -2]) == -1") == "true");
  CHECK(env.Eval("sum([amount, count]) == 8") == "true");
  SUBCASE("an empty list: count and sum are 0, the others have no value") {
    CHECK(env.Eval("count(empty) == 0") == "true");
    CHECK(env.Eval("sum(empty) == 0") == "true");
    CHECK(env.Eval("avg(empty) > 0") == "no value");
    CHECK(env.Eval("min(empty) < 0") == "no value");
    CHECK(env.Eval("max([]) == 0") == "no value");
  }
  SUBCASE("a non-number element: no value, but count does not care") {
    CHECK(env.Eval("sum(mixed) == 1") == "no value");
    CHECK(env.Eval("avg(tags) == 1") == "no value");
    CHECK(env.Eval("min([1, null]) == 1") == "no value");
    CHECK(env.Eval("max([1, missing]) == 1") == "no value");
    CHECK(env.Eval("count(mixed) == 2") == "true");
  }
  SUBCASE("not a list: no value") {
    CHECK(env.Eval("count(name) == 12") == "no value");
    CHECK(env.Eval("sum(amount) == 5") == "no value");
    CHECK(env.Eval("max(missing) == 5") == "no value");
  }
}

TEST_CASE("Condition: abs and size") {
  Env env;
  CHECK(env.Eval("abs(neg) == 7") == "true");
  CHECK(env.Eval("abs(amount) == 5") == "true");
  CHECK(env.Eval("abs(-0.5) == 0.5") == "true");
  CHECK(env.Eval("abs('x') == 1") == "no value");
  CHECK(env.Eval("size(name) == 12") == "true");
  CHECK(env.Eval("size(tags) == 3") == "true");
  CHECK(env.Eval("size(empty) == 0 && size('') == 0 && size([1, 2]) == 2") == "true");
  CHECK(env.Eval("size(amount) == 1") == "no value");
  CHECK(env.Eval("size(merchant) == 3") == "no value");
  CHECK(env.Eval("size(missing) == 0") == "no value");
}

TEST_CASE("Condition: string methods") {
  Env env;
  CHECK(env.Eval("name.startsWith('Ada')") == "true");
  CHECK(env.Eval("name.startsWith('Lovelace')") == "false");
  CHECK(env.Eval("name.endsWith('Lovelace')") == "true");
  CHECK(env.Eval("name.endsWith('Ada')") == "false");
  CHECK(env.Eval("name.contains('a L')") == "true");
  CHECK(env.Eval("name.contains('xyz')") == "false");
  CHECK(env.Eval("name.startsWith('') && name.endsWith('') && name.contains('')") == "true");
  CHECK(env.Eval("first.startsWith('Ada Lovelace')") == "false");  // longer than the string
  CHECK(env.Eval("first.endsWith('x Ada')") == "false");
  CHECK(env.Eval("first.contains('Ada!')") == "false");
  CHECK(env.Eval("name.endsWith('a Lovelace') && name.startsWith('Ada Lovelac')") == "true");
  CHECK(env.Eval("name.startsWith(first) && name.endsWith(last)") == "true");
  CHECK(env.Eval("name.lower() == 'ada lovelace'") == "true");
  CHECK(env.Eval("name.upper() == 'ADA LOVELACE'") == "true");
  CHECK(env.Eval("name.lower().startsWith('ada l')") == "true");
  CHECK(env.Eval("'MiXeD 123_!'.lower() == 'mixed 123_!'") == "true");
  CHECK(env.Eval("name.lower().upper() == name.upper()") == "true");
  CHECK(env.Eval("amount.startsWith('5')") == "no value");
  CHECK(env.Eval("name.contains(5)") == "no value");
  CHECK(env.Eval("tags.contains('a')") == "no value");  // a list, not a string
  CHECK(env.Eval("amount.lower() == '5'") == "no value");
  CHECK(env.Eval("$small[0].lower() == 'x'") == "no value");  // an absent event
}

TEST_CASE("Condition: matches() is an RE2 partial match") {
  Env env;
  CHECK(env.Eval("code.matches('[0-9]+')") == "true");  // partial: anywhere in the string
  CHECK(env.Eval("code.matches('^A[0-9]{3}$')") == "true");
  CHECK(env.Eval("code.matches('^[0-9]+$')") == "false");
  CHECK(env.Eval(R"(code.matches('^A\\d+$'))") == "true");  // '\\d' in the text is \d
  CHECK(env.Eval("name.matches('(?i)^ADA')") == "true");
  CHECK(env.Eval("word.matches('^h.llo$')") == "true");  // . is one code point
  CHECK(env.Eval("empty_string.matches('')") == "true");
  CHECK(env.Eval("amount.matches('5')") == "no value");
  CHECK(env.Eval("missing.matches('x')") == "no value");
  CHECK(env.Eval("'abc'.matches('b')") == "true");  // folded at compile time
  CHECK(env.Eval("name.matches('a' + 'ce$')") == "true");  // a constant pattern is fine
}

TEST_CASE("Condition: matches() runs in linear time on a ReDoS-shaped regex") {
  Env env;
  const Condition c = env.Compile("s.matches('^(a+)+$') || s.matches('(a|aa)*c')");
  const Event* e = env.Parse(R"({"s": ")" + std::string(100000, 'a') + R"(!"})");
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(env.Matches(c, *e));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // A backtracking engine needs astronomically long here; RE2 takes milliseconds.
  CHECK(elapsed < std::chrono::seconds(1));
}

// ---- Stages --------------------------------------------------------------------------------

TEST_CASE("Condition: $stage indexes the stage's events") {
  Env env;
  const Condition first = env.Compile("$small[0].amount == 1");
  const Condition last = env.Compile("$small[-1].amount == 3");
  const Condition second = env.Compile("$small[1]['amount'] == 2");
  const Condition dynamic = env.Compile("$small[idx].amount == 2 && $small[idx - 2].amount == 3");
  const Condition nested = env.Compile("$small[0].merchant.country == 'NL'");
  const Condition out_of_range = env.Compile("$small[3].amount > 0 || $small[-4].amount > 0");
  const Condition not_integer = env.Compile("$small[0.5].amount > 0");
  const Condition field_missing = env.Compile("$small[1].merchant.country == 'NL'");
  const Condition compare = env.Compile("amount > 100 * $small[0].amount");
  const Condition has = env.Compile("has($small[0].merchant) && !has($small[1].merchant)");
  const Condition has_absent = env.Compile("has($small[7].amount)");
  const Condition other_stage = env.Compile("$large[0].amount > $small[-1].amount");
  const Condition grouped = env.Compile("($small[0]).amount == 1");

  FakeMatch m;
  m.Add(kSmall, env.Parse(R"({"amount": 1, "merchant": {"country": "NL"}})"));
  m.Add(kSmall, env.Parse(R"({"amount": 2})"));
  m.Add(kSmall, env.Parse(R"({"amount": 3})"));
  m.Add(kLarge, env.Parse(R"({"amount": 500})"));
  const Event& e = *env.Parse(R"({"amount": 101, "idx": 1})");

  CHECK(env.Matches(first, e, &m));
  CHECK(env.Matches(last, e, &m));
  CHECK(env.Matches(second, e, &m));
  CHECK(env.Matches(dynamic, e, &m));
  CHECK(env.Matches(nested, e, &m));
  CHECK_FALSE(env.Matches(out_of_range, e, &m));
  CHECK_FALSE(env.Matches(not_integer, e, &m));
  CHECK_FALSE(env.Matches(field_missing, e, &m));
  CHECK(env.Matches(compare, e, &m));
  CHECK(env.Matches(has, e, &m));
  CHECK_FALSE(env.Matches(has_absent, e, &m));
  CHECK(env.Matches(other_stage, e, &m));
  CHECK(env.Matches(grouped, e, &m));
}

TEST_CASE("Condition: $stage projects fields and aggregates over them") {
  Env env;
  const std::vector<std::string> checks = {
      "count($small) == 4",
      "size($small) == 4",
      "count($small.amount) == 3",  // the event without amount is skipped
      "size($small.amount) == 3",
      "sum($small.amount) == 6",
      "avg($small.amount) == 2",
      "min($small.amount) == 1",
      "max($small.amount) == 3",
      "$small.amount == [1, 2, 3]",
      "$small['amount'] == [1, 2, 3]",
      "$small.amount[-1] == 3",
      "2 in $small.amount",
      "!(7 in $small.amount)",
      "$small.merchant.country == ['NL']",
      "count($small.missing) == 0 && sum($small.missing) == 0",
      "count(($small)) == 4",
      "size([$small.amount, $small.amount][1]) == 3",
      "sum($small.amount) + max($small.amount) > amount",
  };
  std::vector<Condition> conditions;
  for (const std::string& text : checks) conditions.push_back(env.Compile(text));

  FakeMatch m;
  m.Add(kSmall, env.Parse(R"({"amount": 1, "merchant": {"country": "NL"}})"));
  m.Add(kSmall, env.Parse(R"({"other": 2})"));
  m.Add(kSmall, env.Parse(R"({"amount": 2})"));
  m.Add(kSmall, env.Parse(R"({"amount": 3})"));
  const Event& e = *env.Parse(R"({"amount": 8})");
  for (size_t i = 0; i < checks.size(); ++i) {
    INFO(checks[i]);
    CHECK(env.Matches(conditions[i], e, &m));
  }
  const Condition non_number = env.Compile("sum($small.name) == 0");
  FakeMatch named;
  named.Add(kSmall, env.Parse(R"({"name": "x"})"));
  CHECK_FALSE(env.Matches(non_number, e, &named));
}

TEST_CASE("Condition: a stage with no events") {
  Env env;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"count($none) == 0", "true"},
      {"size($none) == 0", "true"},
      {"sum($none.amount) == 0", "true"},
      {"count($none.amount) == 0", "true"},
      {"avg($none.amount) > 0", "no value"},
      {"min($none.amount) > 0", "no value"},
      {"max($none.amount) < 0", "no value"},
      {"$none[0].amount == 1", "no value"},
      {"$none[-1].amount == 1", "no value"},
      {"has($none[0].amount)", "false"},
      {"1 in $none.amount", "false"},
      {"$none.amount == []", "true"},
  };
  FakeMatch m;
  for (const auto& [text, want] : cases) {
    INFO(text);
    CHECK(env.Eval(text, kEvent, &m) == want);
  }
}

TEST_CASE("Condition: without a MatchView every stage reads as empty") {
  Env env;
  const Condition c = env.Compile("count($small) == 0 && sum($small.amount) == 0");
  CHECK(env.Matches(c, *env.Parse(kEvent), nullptr));
}

TEST_CASE("Condition: reads_stages() is true iff a $stage is mentioned") {
  Env env;
  CHECK_FALSE(env.Compile("amount > 5 && has(x) && count(tags) > 1").reads_stages());
  CHECK(env.Compile("count($small) > 0").reads_stages());
  CHECK(env.Compile("amount > $small[0].amount").reads_stages());
  CHECK(env.Compile("false && $small[0].amount > 1").reads_stages());
}

// ---- Compiled form ------------------------------------------------------------------------

TEST_CASE("Condition: text() is the source text") {
  Env env;
  CHECK(env.Compile(" amount > 5 ").text() == " amount > 5 ");
}

TEST_CASE("Condition: copies share the compiled program") {
  Env env;
  std::optional<Condition> copy;
  {
    const Condition original = env.Compile("name.matches('^Ada') && country in ['NL', 'BE']");
    copy = original;
  }
  CHECK(env.Matches(*copy, *env.Parse(kEvent)));
}

TEST_CASE("Condition: constant results survive scratch reuse") {
  // 'a' + 'b' and upper() of a literal are evaluated while compiling; their results must live
  // in the program, not in a scratch that later evaluations overwrite.
  Env env;
  const Condition folded = env.Compile("x == 'a' + 'b' && y == 'cd'.upper()");
  const Condition scribbler = env.Compile("(x + y + x + y).lower() != ''");
  const Event* e = env.Parse(R"({"x": "ab", "y": "CD"})");
  for (int i = 0; i < 5; ++i) {
    CHECK(env.Matches(scribbler, *e));
    CHECK(env.Matches(folded, *e));
  }
}

TEST_CASE("Condition: a scratch is reused across events") {
  Env env;
  const Condition c = env.Compile("name.lower() + '/' + $small.name[0].upper() == want");
  for (int i = 0; i < 50; ++i) {
    const std::string n(static_cast<size_t>(i * 13 % 400), static_cast<char>('A' + i % 26));
    const std::string lower(n.size(), static_cast<char>('a' + i % 26));
    FakeMatch m;
    m.Add(kSmall, env.Parse(R"({"name": ")" + lower + R"("})"));
    const Event* e = env.Parse(R"({"name": ")" + n + R"(", "want": ")" + lower + "/" + n + R"("})");
    CHECK(env.Matches(c, *e, &m));
  }
}

TEST_CASE("Condition: evaluation allocates nothing once the scratch is warm") {
  Env env;
  const std::vector<Condition> conditions = {
      env.Compile("amount > 1 && amount * 2 <= 10 && -amount % 3 != 7"),
      env.Compile("country == 'NL' && name >= 'A' || missing"),
      env.Compile("country in ['NL', 'BE'] && !(country in ['A', 'B', 'C', 'D', 'E', 'F', 'G', "
                  "'H'])"),
      env.Compile("code.matches('^A[0-9]+$') && name.startsWith('Ada')"),
      env.Compile("name.lower() + first.upper() != ''"),
      env.Compile("sum($small.amount) > 0 && $small[-1].amount == 2 && count($small) == 2"),
      env.Compile("$small.amount == [1, 2] && [amount, count] == [5, 3]"),
      env.Compile("has(merchant.country) && 'b' in tags && size(word) == 5"),
  };
  FakeMatch m;
  m.Add(kSmall, env.Parse(R"({"amount": 1})"));
  m.Add(kSmall, env.Parse(R"({"amount": 2})"));
  const Event& e = *env.Parse(kEvent);
  for (const Condition& c : conditions) CHECK(env.Matches(c, e, &m));  // warm-up

  const long before = testing::CountedAllocations();
  int matched = 0;
  for (int i = 0; i < 100; ++i) {
    for (const Condition& c : conditions) matched += env.Matches(c, e, &m);
  }
  const long allocations = testing::CountedAllocations() - before;
  CHECK(matched == 100 * static_cast<int>(conditions.size()));
  CHECK(allocations == 0);
}

// ---- Compile errors ------------------------------------------------------------------------

TEST_CASE("Condition: compile errors give an offset and a message") {
  struct Case {
    std::string text;
    size_t offset;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", 0, "unexpected end of expression"},
      {"   ", 3, "unexpected end of expression"},
      {"amount >", 8, "unexpected end of expression"},
      {"amount > 5)", 10, "unexpected ')'"},
      {")", 0, "unexpected ')'"},
      {"a b", 2, "unexpected 'b'"},
      {"a > 5 5", 6, "unexpected '5'"},
      {"[1,,2]", 3, "unexpected ','"},
      {"in", 0, "unexpected 'in'"},
      {"a in", 4, "unexpected end of expression"},
      {"foo(1)", 0, "unknown function 'foo'"},
      {"a && bar()", 5, "unknown function 'bar'"},
      {"lower(x)", 0, "unknown function 'lower' (it is a method: s.lower(...))"},
      {"x.foo()", 2, "unknown method 'foo'"},
      {"x.size()", 2, "unknown method 'size' (it is a function: size(x))"},
      {"count(1, 2)", 0, "'count' takes 1 argument, got 2"},
      {"sum()", 0, "'sum' takes 1 argument, got 0"},
      {"x.lower(1)", 2, "'lower' takes no arguments, got 1"},
      {"x.startsWith()", 2, "'startsWith' takes 1 argument, got 0"},
      {"x.contains('a', 'b')", 2, "'contains' takes 1 argument, got 2"},
      {"count(a", 7, "expected ')' after arguments"},
      {"count(a b)", 8, "expected ')' after arguments"},
      {"(a", 2, "expected ')'"},
      {"[1, 2", 5, "expected ',' or ']' in list"},
      {"a[0", 3, "expected ']' after index"},
      {"a.", 2, "expected a field or method name after '.'"},
      {"a.1", 2, "expected a field or method name after '.'"},
      {"$nope[0].x > 1", 0, "unknown stage 'nope'"},
      {"a > $nope", 4, "unknown stage 'nope'"},
      {"$ > 1", 0, "expected a stage name after '$'"},
      {"$1", 0, "expected a stage name after '$'"},
      {"a = 1", 2, "unexpected '=' (did you mean '=='?)"},
      {"a & b", 2, "unexpected '&' (did you mean '&&'?)"},
      {"a | b", 2, "unexpected '|' (did you mean '||'?)"},
      {"a # b", 2, "unexpected character '#'"},
      {"a € b", 2, "unexpected character '€'"},
      {"x == 'abc", 5, "unterminated string"},
      {"x == \"abc\\\"", 5, "unterminated string"},
      {"x == 'ab\\", 5, "unterminated string"},
      {"x == 'ab\\q'", 8, "unknown escape '\\q' in string"},
      {"x == 'ab\\é'", 8, "unknown escape '\\é' in string"},
      {"x == '\\u12'", 6, "invalid escape '\\u': expected four hex digits of a code point"},
      {"x == '\\ud800'", 6, "invalid escape '\\u': expected four hex digits of a code point"},
      {"1e999 > 1", 0, "number out of range"},
      {"x.matches(y)", 10, "matches() takes a regular expression in quotes"},
      {"x.matches(1)", 10, "matches() takes a regular expression in quotes"},
      {"x.matches( 'a(b' )", 11, "invalid regular expression: missing ): a(b"},
      {"has(1)", 4, "has() takes a field path, such as has(a.b) or has($s[0].x)"},
      {"has(event)", 4, "has() takes a field path, such as has(a.b) or has($s[0].x)"},
      {"has($small)", 4, "has() takes a field path, such as has(a.b) or has($s[0].x)"},
      {"has($small.x)", 4, "has() takes a field path, such as has(a.b) or has($s[0].x)"},
      {"has(a.lower())", 4, "has() takes a field path, such as has(a.b) or has($s[0].x)"},
      {"event[0] == 1", 6, "an event is indexed by a field name in quotes"},
      {"event[x] == 1", 6, "an event is indexed by a field name in quotes"},
      {"$small[0][1] == 1", 10, "an event is indexed by a field name in quotes"},
  };
  for (const Case& c : cases) {
    INFO("text: ", c.text);
    Env env;
    const ConditionError error = env.Error(c.text);
    CHECK(error.offset == c.offset);
    CHECK(error.message == c.message);
  }
}

TEST_CASE("Condition: deep nesting is a compile error, not a stack overflow") {
  Env env;
  SUBCASE("parentheses") {
    const std::string text = std::string(100000, '(') + "1" + std::string(100000, ')');
    CHECK(env.Error(text).message == "expression is nested too deeply");
  }
  SUBCASE("negations") {
    CHECK(env.Error(std::string(100000, '!') + "true").message ==
          "expression is nested too deeply");
  }
  SUBCASE("a long chain") {
    std::string text = "a == 0";
    for (int i = 1; i < 2000; ++i) text += " || a == " + std::to_string(i);
    CHECK(env.Error(text).message == "expression is nested too deeply");
  }
  SUBCASE("moderate nesting compiles") {
    const std::string text = std::string(50, '(') + "amount" + std::string(50, ')') + " == 5";
    const Condition nested = env.Compile(text);
    CHECK(env.Matches(nested, *env.Parse(kEvent)));
    std::string text_chain = "a == 0";
    for (int i = 1; i < 500; ++i) text_chain += " || a == " + std::to_string(i);
    const Condition chain = env.Compile(text_chain);
    CHECK(env.Matches(chain, *env.Parse(R"({"a": 499})")));
  }
}

TEST_CASE("Condition: the strings a field must hold, when the form shows them") {
  Env env;
  // Each required field as "path=v1,v2", sorted, so the cases read as the conditions do.
  auto required = [&env](const std::string& text) {
    std::vector<std::string> out;
    const Condition condition = env.Compile(text);
    for (const RequiredStrings& r : condition.required_strings()) {
      std::string entry = env.schema().path(r.slot)[0] + "=";
      for (size_t i = 0; i < r.values.size(); ++i) entry += (i ? "," : "") + r.values[i];
      out.push_back(entry);
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  using List = std::vector<std::string>;
  CHECK(required("type == 'login'") == List{"type=login"});
  CHECK(required("'login' == type") == List{"type=login"});
  CHECK(required("type in ['b', 'a', 'b']") == List{"type=a,b"});
  CHECK(required("type == 'a' && amount > 5") == List{"type=a"});
  CHECK(required("amount > 5 && type == 'a'") == List{"type=a"});
  CHECK(required("type == 'a' && country == 'NL'") == List{"country=NL", "type=a"});
  CHECK(required("type in ['a', 'b'] && type in ['b', 'c']") == List{"type=b"});
  CHECK(required("type == 'a' || type in ['b', 'c']") == List{"type=a,b,c"});
  CHECK(required("(type == 'a' && x == 'p') || (type == 'b' && y == 'q')") == List{"type=a,b"});
  // Nothing evident: another field on one side, a negation, a number, a mixed list.
  CHECK(required("type == 'a' || amount > 1").empty());
  CHECK(required("type == 'a' || missing == 1").empty());
  CHECK(required("type != 'a'").empty());
  CHECK(required("!(type == 'a')").empty());
  CHECK(required("type == 5").empty());
  CHECK(required("type in ['a', 1]").empty());
  CHECK(required("type.lower() == 'a'").empty());
  CHECK(required("flag").empty());
  // What they promise: an event without one of those strings does not match.
  const Condition c = env.Compile("type in ['a', 'b'] && amount > 1");
  CHECK(env.Matches(c, *env.Parse(R"({"type": "a", "amount": 2})")));
  CHECK(!env.Matches(c, *env.Parse(R"({"type": "c", "amount": 2})")));
  CHECK(!env.Matches(c, *env.Parse(R"({"type": 1, "amount": 2})")));
  CHECK(!env.Matches(c, *env.Parse(R"({"amount": 2})")));
}

TEST_CASE("Condition: a compile with no stage resolver treats every stage as unknown") {
  FieldSchema schema;
  auto result = Condition::Compile("count($s) > 0", &schema, Condition::StageResolver());
  REQUIRE(std::holds_alternative<ConditionError>(result));
  CHECK(std::get<ConditionError>(result).message == "unknown stage 's'");
}

}  // namespace
}  // namespace vigil::nfa

TEST_SUITE_END();
