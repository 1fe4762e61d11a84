// Contiguity and looping, from the worked examples in Flink CEP's documentation.
#include <doctest/doctest.h>

#include "support/nfa_harness.h"

using vigil::testing::RunPattern;
using vigil::testing::Sorted;
using vigil::testing::Stream;
using Matches = std::vector<std::string>;

TEST_SUITE_BEGIN("conformance");

namespace {

std::string TwoStage(const std::string& contiguity) {
  return "id: ab\nkey: k\nsequence:\n"
         "  - begin: a\n    where: name == 'a'\n"
         "  - " + contiguity + ": b\n    where: name == 'b'\n";
}

std::string Looping(const std::string& modifier) {
  return "id: cab\nsequence:\n"
         "  - begin: c\n    where: name == 'c'\n"
         "  - followed_by: a\n    where: name == 'a'\n    one_or_more: true\n" + modifier +
         "  - followed_by: b\n    where: name == 'b'\n";
}

}  // namespace

TEST_CASE("Contiguity: next needs the very next event") {
  auto r = RunPattern(TwoStage("next"), Stream("a1 c1 b1 b2"));
  CHECK(r.problems.empty());
  CHECK(r.matches.empty());
  CHECK(RunPattern(TwoStage("next"), Stream("a1 b1 b2")).matches == Matches{"a1 b1"});
}

TEST_CASE("Contiguity: followed_by skips to the next matching event") {
  CHECK(RunPattern(TwoStage("followed_by"), Stream("a1 c1 b1 b2")).matches == Matches{"a1 b1"});
}

TEST_CASE("Contiguity: followed_by_any tries every later matching event") {
  CHECK(RunPattern(TwoStage("followed_by_any"), Stream("a1 c1 b1 b2")).matches ==
        Matches{"a1 b1", "a1 b2"});
}

TEST_CASE("Looping: relaxed inner contiguity (Flink docs, C D A1 A2 A3 D A4 B)") {
  CHECK(RunPattern(Looping(""), Stream("c1 d1 a1 a2 a3 d2 a4 b1")).matches ==
        Sorted({"c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1", "c1 a1 a2 a3 a4 b1"}));
}

TEST_CASE("Looping: consecutive stops the loop at a non-matching event") {
  CHECK(RunPattern(Looping("    consecutive: true\n"), Stream("c1 d1 a1 a2 a3 d2 a4 b1")).matches ==
        Sorted({"c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1"}));
}

TEST_CASE("Looping: allow_combinations takes every subsequence") {
  CHECK(RunPattern(Looping("    allow_combinations: true\n"), Stream("c1 d1 a1 a2 a3 d2 a4 b1"))
            .matches == Sorted({"c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a3 b1", "c1 a1 a4 b1",
                                "c1 a1 a2 a3 b1", "c1 a1 a2 a4 b1", "c1 a1 a3 a4 b1",
                                "c1 a1 a2 a3 a4 b1"}));
}

TEST_CASE("Looping: times takes exactly N events") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    times: 2\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 b2 b3 c1")).matches == Matches{"a1 b1 b2 c1"});
}

TEST_CASE("Looping: times [MIN, MAX] takes every count in range") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    times: [1, 3]\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 b2 b3 c1")).matches ==
        Sorted({"a1 b1 c1", "a1 b1 b2 c1", "a1 b1 b2 b3 c1"}));
}

TEST_CASE("Looping: times [0, N] is optional") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    times: [0, 2]\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1")).matches == Sorted({"a1 b1 c1", "a1 c1"}));
}

TEST_CASE("Looping: times_or_more needs at least N") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    times_or_more: 2\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1")).matches.empty());
  CHECK(RunPattern(p, Stream("a1 b1 b2 b3 c1")).matches ==
        Sorted({"a1 b1 b2 c1", "a1 b1 b2 b3 c1"}));
}

TEST_CASE("Looping: until ends the loop without taking its event") {
  const std::string p =
      "id: u\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    one_or_more: true\n"
      "    until: name == 'x'\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 b2 x1 b3 c1")).matches == Sorted({"a1 b1 c1", "a1 b1 b2 c1"}));
}

TEST_CASE("Looping: consecutive times dies at a gap") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    times: 2\n    consecutive: true\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 x1 b2 b3 c1")).matches.empty());
  CHECK(RunPattern(p, Stream("a1 x1 b1 b2 x2 c1")).matches == Matches{"a1 b1 b2 c1"});
}

TEST_CASE("Looping: followed_by_any before times picks any start, then the next ones") {
  const std::string p =
      "id: t\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by_any: b\n    where: name == 'b'\n    times: 2\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 b2 b3 c1")).matches == Sorted({"a1 b1 b2 c1", "a1 b2 b3 c1"}));
}

TEST_CASE("Optional: a strict optional stage cannot be skipped over a non-matching event") {
  const std::string p =
      "id: o\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - next: b\n    where: name == 'b'\n    optional: true\n"
      "  - next: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 c1")).matches == Matches{"a1 c1"});
  CHECK(RunPattern(p, Stream("a1 b1 c1")).matches == Matches{"a1 b1 c1"});
}

TEST_CASE("Optional: an optional group can be skipped as a whole") {
  const std::string p =
      "id: og\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: g\n    optional: true\n    group:\n"
      "      - begin: b\n        where: name == 'b'\n"
      "      - next: c\n        where: name == 'c'\n"
      "  - followed_by: d\n    where: name == 'd'\n";
  CHECK(RunPattern(p, Stream("a1 d1")).matches == Matches{"a1 d1"});
  CHECK(RunPattern(p, Stream("a1 b1 c1 d1")).matches == Sorted({"a1 b1 c1 d1", "a1 d1"}));
}

TEST_CASE("Optional: a match with and one without the optional stage") {
  const std::string p =
      "id: o\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    optional: true\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1")).matches == Sorted({"a1 b1 c1", "a1 c1"}));
}

TEST_CASE("Greedy: an optional greedy loop takes as many events as it can") {
  // Flink GreedyITCase: c (a* greedy) d over c a1 a2 a3 d.
  const std::string p =
      "id: g\nsequence:\n  - begin: c\n    where: name == 'c'\n"
      "  - followed_by: a\n    where: name == 'a'\n    one_or_more: true\n    optional: true\n"
      "    greedy: true\n"
      "  - followed_by: d\n    where: name == 'd'\n";
  CHECK(RunPattern(p, Stream("c1 a1 a2 a3 d1")).matches == Matches{"c1 a1 a2 a3 d1"});
}

TEST_CASE("Greedy: on the last stage every prefix is emitted") {
  const std::string p =
      "id: g\nsequence:\n  - begin: c\n    where: name == 'c'\n"
      "  - followed_by: a\n    where: name == 'a'\n    one_or_more: true\n    greedy: true\n";
  CHECK(RunPattern(p, Stream("c1 a1 a2 a3")).matches ==
        Sorted({"c1 a1", "c1 a1 a2", "c1 a1 a2 a3"}));
}

TEST_CASE("Begin: a looping first stage starts a run at every matching event") {
  const std::string p =
      "id: l\nsequence:\n  - begin: a\n    where: name == 'a'\n    one_or_more: true\n"
      "  - next: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1 a2 b1")).matches == Sorted({"a1 a2 b1", "a2 b1"}));
}

TEST_CASE("Keys: runs of different keys never mix") {
  const std::string p = TwoStage("followed_by");
  std::vector<std::string> events = {
      vigil::testing::Ev("a1", 1, "a", 0, "x"), vigil::testing::Ev("b1", 2, "b", 0, "y"),
      vigil::testing::Ev("b2", 3, "b", 0, "x")};
  CHECK(RunPattern(p, events).matches == Matches{"a1 b2"});
}

TEST_CASE("Conditions: a stage reads the events an earlier stage took") {
  const std::string p =
      "id: c\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b' && price > $a[0].price\n";
  std::vector<std::string> events = {vigil::testing::Ev("a1", 1, "a", 5),
                                     vigil::testing::Ev("b1", 2, "b", 3),
                                     vigil::testing::Ev("b2", 3, "b", 7)};
  CHECK(RunPattern(p, events).matches == Matches{"a1 b2"});
}

TEST_CASE("Conditions: a loop's own condition sees only its earlier iterations") {
  // Each new a must cost more than the sum of the a's before it.
  const std::string p =
      "id: c\nsequence:\n  - begin: a\n    where: name == 'a' && price > sum($a.price)\n"
      "    one_or_more: true\n    consecutive: true\n"
      "  - next: b\n    where: name == 'b'\n";
  std::vector<std::string> events = {
      vigil::testing::Ev("a1", 1, "a", 1), vigil::testing::Ev("a2", 2, "a", 2),
      vigil::testing::Ev("a3", 3, "a", 2), vigil::testing::Ev("b1", 4, "b", 0)};
  // Runs: a1 a2 (2 > 1), a3 stops it (2 <= 3); a2 alone then a3 fails (2 <= 2); a3 alone.
  CHECK(RunPattern(p, events).matches == Matches{"a3 b1"});
}

TEST_SUITE_END();
