// Pattern documents: what is accepted, and every rejection with its line, column and reason.
#include "nfa/pattern.h"

#include <doctest/doctest.h>

#include "nfa/compiler.h"

TEST_SUITE_BEGIN("nfa");

namespace {

using vigil::nfa::FieldSchema;
using vigil::nfa::ParsePatterns;

// The single error for `text`, as "line:column: message".
std::string ErrorOf(const std::string& text) {
  FieldSchema schema;
  auto parsed = ParsePatterns(text, "p.yaml", &schema);
  if (parsed.errors.size() != 1) return "expected one error, got " + std::to_string(parsed.errors.size());
  const auto& e = parsed.errors[0];
  return std::to_string(e.position.line) + ":" + std::to_string(e.position.column) + ": " + e.message;
}

const char* const kHead = "id: p\nsequence:\n  - begin: a\n    where: x > 1\n";

}  // namespace

TEST_CASE("Pattern: the contract's example document parses") {
  FieldSchema schema;
  auto parsed = ParsePatterns(R"(id: card-testing
description: small charges then a large one
key: card_id
within: 10m
skip: skip_past_last_event
timeouts: true
sequence:
  - begin: small
    where: amount < 5
    times: [3, 5]
    consecutive: true
  - followed_by: large
    where: amount > 100 * $small[0].amount
  - not_followed_by: refund
    where: type == 'refund'
)",
                              "p.yaml", &schema);
  REQUIRE(parsed.errors.empty());
  REQUIRE(parsed.patterns.size() == 1);
  const auto& p = parsed.patterns[0];
  CHECK(p.id == "card-testing");
  CHECK(p.within_ms == 600000);
  CHECK(p.timeouts);
  CHECK(p.stages.size() == 3);
  CHECK(p.stages[0].times_min == 3);
  CHECK(p.stages[0].times_max == 5);
  CHECK(p.stages[0].inner == vigil::nfa::Contiguity::kStrict);
  CHECK(p.stages[2].contiguity == vigil::nfa::Contiguity::kNotFollowedBy);
}

TEST_CASE("Pattern: JSON documents, one object or an array, and several YAML documents") {
  FieldSchema schema;
  auto one = ParsePatterns(R"({"id": "j", "sequence": [{"begin": "a", "where": "x == 1"}]})", "p.json", &schema);
  CHECK(one.errors.empty());
  CHECK(one.patterns.size() == 1);
  auto array = ParsePatterns(R"([{"id": "j1", "sequence": [{"begin": "a"}]},
                                 {"id": "j2", "sequence": [{"begin": "b"}]}])", "p.json", &schema);
  CHECK(array.errors.empty());
  CHECK(array.patterns.size() == 2);
  auto docs = ParsePatterns("id: y1\nsequence:\n  - begin: a\n---\nid: y2\nsequence:\n  - begin: b\n",
                            "p.yaml", &schema);
  CHECK(docs.errors.empty());
  CHECK(docs.patterns.size() == 2);
}

TEST_CASE("Pattern: errors name the line, the column and what is wrong") {
  CHECK(ErrorOf("id: p\nsequence: [\n") == "3:1: end of sequence flow not found");
  CHECK(ErrorOf("sequence:\n  - begin: a\n") == "1:1: missing required key 'id'");
  CHECK(ErrorOf("id: Bad Id\nsequence:\n  - begin: a\n") ==
        "1:5: id 'Bad Id' must match [a-z0-9][a-z0-9_.-]{0,127}");
  CHECK(ErrorOf("id: p\ncolour: red\nsequence:\n  - begin: a\n").find("2:1: unknown key 'colour'") == 0);
  CHECK(ErrorOf("id: p\nsequence:\n  - next: a\n") ==
        "3:5: the first stage of a sequence must be 'begin: NAME'");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: a\n") == "5:5: duplicate stage name 'a'");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    where: x >\n") ==
        "6:15: unexpected end of expression");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    where: frobnicate(x)\n") ==
        "6:12: unknown function 'frobnicate'");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    where: $nope[0].x > 1\n") ==
        "6:12: unknown stage 'nope'");
  CHECK(ErrorOf("id: p\nwithin: 10 minutes\nsequence:\n  - begin: a\n").find("2:9: bad duration '10 minutes'") == 0);
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    times: 0\n") == "6:12: times must be at least 1");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    times: 2\n    one_or_more: true\n") ==
        "7:5: a stage takes at most one of times, one_or_more, times_or_more");
  CHECK(ErrorOf(std::string(kHead) + "  - not_followed_by: b\n") ==
        "5:5: a pattern can end with not_followed_by only when it has 'within'");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    optional: true\n  - not_next: c\n") ==
        "7:5: a negated stage cannot follow an optional stage ('b')");
  CHECK(ErrorOf(std::string(kHead) + "  - not_next: b\n    times: 2\n  - next: c\n") ==
        "6:5: a negated stage (not_next, not_followed_by) takes no quantifier, optional or greedy");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    consecutive: true\n") ==
        "5:5: consecutive applies only to a stage with times, one_or_more or times_or_more");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    until: x == 1\n") ==
        "6:12: until applies only to a one_or_more or times_or_more stage");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    greedy: true\n") ==
        "5:5: greedy applies only to a stage with times, one_or_more or times_or_more");
  CHECK(ErrorOf("id: p\nskip: {skip_to_first: zz}\nsequence:\n  - begin: a\n") ==
        "2:23: skip names unknown stage 'zz'");
  CHECK(ErrorOf("id: p\nskip: skip_all\nsequence:\n  - begin: a\n").find("2:7: unknown skip strategy 'skip_all'") == 0);
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    times: 100000\n") ==
        "6:12: times may not exceed 1000");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    where: x > 1\n    group:\n      - begin: c\n") ==
        "6:12: a group stage takes 'group' instead of 'where'");
}

TEST_CASE("Pattern: groups nest at most 32 deep") {
  auto nested = [](int levels) {
    std::string s = "id: deep\nsequence:\n  - begin: a\n";
    std::string indent;
    for (int i = 0; i < levels; ++i) {
      s += indent + "  - followed_by: g" + std::to_string(i) + "\n" + indent + "    group:\n" +
           indent + "      - begin: b" + std::to_string(i) + "\n";
      indent += "    ";
    }
    return s;
  };
  FieldSchema schema;
  CHECK(ParsePatterns(nested(32), "p.yaml", &schema).errors.empty());
  CHECK(ErrorOf(nested(33)).find("groups nest more than 32 deep") != std::string::npos);
}

TEST_CASE("Pattern: a document that is not valid UTF-8 is rejected where the bad byte is") {
  // An invalid byte in a description would otherwise be served back inside JSON.
  CHECK(ErrorOf("id: p\ndescription: caf\xe9\nsequence:\n  - begin: a\n") == "2:17: not valid UTF-8");
  CHECK(ErrorOf(std::string(kHead) + "  - followed_by: b\n    where: v == '\xed\xa0\x80'\n") ==
        "6:18: not valid UTF-8");  // an encoded surrogate
  FieldSchema schema;
  CHECK(ParsePatterns("id: p\ndescription: caf\xc3\xa9 \xf0\x9f\x92\xb3\nsequence:\n  - begin: a\n",
                      "p.yaml", &schema).errors.empty());
}

TEST_CASE("Pattern: YAML or JSON nested thousands deep is an error, not a stack overflow") {
  const std::string deep = "id: p\nsequence: " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  CHECK(ErrorOf(deep).find("nested too deeply") != std::string::npos);
  const std::string json = "{\"id\":\"p\",\"sequence\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK(ErrorOf(json).find("nested too deeply") != std::string::npos);
}

TEST_CASE("Pattern: input on which the YAML library would loop for ever is an error (found by fuzzing)") {
  // yaml-cpp's LoadAll allocates nodes without end on this (a stray ',' after a top-level
  // flow mapping); it must be refused quickly instead.
  const std::string looping =
      "{\"idp\":\"fz\",\"key\":\"card_id\",\"within\":\"1m\",\"N4YAML15ParserExcn\":\"a\","
      "\"where\":\"amount`< 2\"},{\"followedunt > $a[0].amount * 2\"}";
  CHECK(ErrorOf(looping).find("the YAML parser does not end") != std::string::npos);
}

TEST_CASE("Pattern: YAML aliases are refused") {
  CHECK(ErrorOf("id: p\nsequence:\n  - begin: &b a\n  - followed_by: *b\n") ==
        "4:18: aliases (*name) are not allowed in patterns");
}

TEST_CASE("Pattern: at most 256 stages") {
  auto stages = [](int n) {
    std::string s = "id: long\nsequence:\n  - begin: s0\n";
    for (int i = 1; i < n; ++i) s += "  - followed_by: s" + std::to_string(i) + "\n";
    return s;
  };
  FieldSchema schema;
  CHECK(ParsePatterns(stages(256), "p.yaml", &schema).errors.empty());
  CHECK(ErrorOf(stages(257)) == "259:5: a pattern may have at most 256 stages");
}

TEST_CASE("Pattern: a rejected document does not stop the others in the file") {
  FieldSchema schema;
  auto parsed = ParsePatterns("id: ok\nsequence:\n  - begin: a\n---\nid: bad\nsequence: []\n", "p.yaml", &schema);
  CHECK(parsed.patterns.size() == 1);
  REQUIRE(parsed.errors.size() == 1);
  CHECK(parsed.errors[0].ToString() == "p.yaml:6:11: sequence must be a non-empty list of stages");
}

TEST_CASE("Compiler: the state count of a pattern is bounded") {
  FieldSchema schema;
  std::string text = "id: big\nsequence:\n  - begin: a\n    times: [1, 1000]\n";
  for (int i = 0; i < 5; ++i) {
    text += "  - followed_by: s" + std::to_string(i) + "\n    times: [1, 1000]\n";
  }
  auto parsed = ParsePatterns(text, "p.yaml", &schema);
  REQUIRE(parsed.patterns.size() == 1);
  auto compiled = vigil::nfa::NfaCompiler::Compile(
      std::make_shared<const vigil::nfa::Pattern>(std::move(parsed.patterns[0])));
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.status().message().find("more than the limit of 4096") != std::string::npos);
}

TEST_SUITE_END();
