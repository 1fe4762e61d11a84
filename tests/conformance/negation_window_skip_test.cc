// Negation, windows, timeouts, skip strategies and groups, with Flink CEP's semantics and the
// contract's settled questions.
#include <doctest/doctest.h>

#include "support/nfa_harness.h"

using vigil::testing::RunPattern;
using vigil::testing::Sorted;
using vigil::testing::Stream;
using Matches = std::vector<std::string>;

TEST_SUITE_BEGIN("conformance");

namespace {

const char* const kNotNext =
    "id: nn\nsequence:\n  - begin: a\n    where: name == 'a'\n"
    "  - not_next: b\n    where: name == 'b'\n"
    "  - followed_by: c\n    where: name == 'c'\n";

const char* const kNotFollowedBy =
    "id: nf\nsequence:\n  - begin: a\n    where: name == 'a'\n"
    "  - not_followed_by: b\n    where: name == 'b'\n"
    "  - followed_by: c\n    where: name == 'c'\n";

std::string SkipPattern(const std::string& skip) {
  // Flink docs: b+ c over b1 b2 b3 c, with c strictly after the loop.
  return "id: s\nskip: " + skip +
         "\nsequence:\n  - begin: b\n    where: name == 'b'\n    one_or_more: true\n"
         "  - next: c\n    where: name == 'c'\n";
}

}  // namespace

TEST_CASE("Negation: not_next kills the run when the next event matches") {
  CHECK(RunPattern(kNotNext, Stream("a1 b1 c1")).matches.empty());
  CHECK(RunPattern(kNotNext, Stream("a1 d1 b1 c1")).matches == Matches{"a1 c1"});
}

TEST_CASE("Negation: not_followed_by kills the run when the event comes before the next stage") {
  CHECK(RunPattern(kNotFollowedBy, Stream("a1 d1 b1 c1")).matches.empty());
  CHECK(RunPattern(kNotFollowedBy, Stream("a1 d1 c1 b1")).matches == Matches{"a1 c1"});
}

TEST_CASE("Negation: a not_followed_by before an optional stage carries to the next taking stage") {
  // Flink: begin(a).notFollowedBy(b).followedByAny(c).optional().followedByAny(d):
  // a c b d matches (taking c ends the negation), a b d does not.
  const std::string p =
      "id: nc\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - not_followed_by: b\n    where: name == 'b'\n"
      "  - followed_by_any: c\n    where: name == 'c'\n    optional: true\n"
      "  - followed_by_any: d\n    where: name == 'd'\n";
  CHECK(RunPattern(p, Stream("a1 c1 b1 d1")).matches == Matches{"a1 c1 d1"});
  CHECK(RunPattern(p, Stream("a1 b1 d1")).matches.empty());
}

TEST_CASE("Negation: trailing not_followed_by completes when the window closes") {
  const std::string p =
      "id: nt\nkey: k\nwithin: 5ms\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - not_followed_by: b\n    where: name == 'b'\n";
  // a1 sees no b before 6 (window closes at the watermark 10); a2 is followed by b1.
  CHECK(RunPattern(p, Stream("a1@1 c1@2 a2@10 b1@12 c2@20")).matches == Matches{"a1"});
  // At the end of input every window closes: a3 completes.
  CHECK(RunPattern(p, Stream("a3@1 c1@2")).matches == Matches{"a3"});
}

TEST_CASE("Negation: trailing not_next completes on the next event, not at end of input") {
  const std::string p =
      "id: nn2\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - not_next: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1 c1 a2 b1 a3")).matches == Matches{"a1"});
}

TEST_CASE("Within: the window is exclusive, first to last event") {
  const std::string p =
      "id: w\nwithin: 10ms\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1@0 b1@9 a2@20 b2@30")).matches == Matches{"a1 b1"});
}

TEST_CASE("Within: timed-out partial matches are reported when asked for") {
  const std::string p =
      "id: w\nwithin: 10ms\ntimeouts: true\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1@0 b1@9 a2@20 b2@30")).matches ==
        Sorted({"a1 b1", "a2 (timeout)"}));
  // At the end of input, a run holding only its first stage times out too.
  CHECK(RunPattern(p, Stream("a1@0")).matches == Matches{"a1 (timeout)"});
}

TEST_CASE("Within: previous_and_current bounds each gap, not the whole match") {
  const std::string stages =
      "sequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n  - followed_by: c\n    where: name == 'c'\n";
  const std::string gap = "id: g\nwithin: {time: 5ms, between: previous_and_current}\n" + stages;
  const std::string whole = "id: g\nwithin: 5ms\n" + stages;
  CHECK(RunPattern(gap, Stream("a1@0 b1@4 c1@8")).matches == Matches{"a1 b1 c1"});
  CHECK(RunPattern(gap, Stream("a1@0 b1@5 c1@8")).matches.empty());
  CHECK(RunPattern(whole, Stream("a1@0 b1@4 c1@8")).matches.empty());
}

TEST_CASE("Within: a pattern without within discards its runs at the end of input") {
  const std::string p =
      "id: w\ntimeouts: true\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1 c1")).matches.empty());
}

TEST_CASE("Skip: the strategies of Flink's documentation table") {
  const auto events = Stream("b1 b2 b3 c1");
  CHECK(RunPattern(SkipPattern("no_skip"), events).matches ==
        Sorted({"b1 b2 b3 c1", "b2 b3 c1", "b3 c1"}));
  CHECK(RunPattern(SkipPattern("skip_to_next"), events).matches ==
        Sorted({"b1 b2 b3 c1", "b2 b3 c1", "b3 c1"}));
  CHECK(RunPattern(SkipPattern("skip_past_last_event"), events).matches ==
        Matches{"b1 b2 b3 c1"});
  CHECK(RunPattern(SkipPattern("{skip_to_first: b}"), events).matches ==
        Sorted({"b1 b2 b3 c1", "b2 b3 c1", "b3 c1"}));
  CHECK(RunPattern(SkipPattern("{skip_to_last: b}"), events).matches ==
        Sorted({"b1 b2 b3 c1", "b3 c1"}));
}

TEST_CASE("Skip: skip_to_next drops runs that started with the match's first event") {
  // followed_by_any keeps a1's run waiting after it takes b1; skipping to the event after a1
  // drops it, so a1 b2 is not reported.
  const std::string p =
      "id: s\nskip: skip_to_next\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by_any: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1 b1 b2")).matches == Matches{"a1 b1"});
  const std::string no_skip =
      "id: s\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by_any: b\n    where: name == 'b'\n";
  CHECK(RunPattern(no_skip, Stream("a1 b1 b2")).matches == Sorted({"a1 b1", "a1 b2"}));
}

TEST_CASE("Skip: skip_past_last_event drops runs that started before the match ended") {
  const std::string p =
      "id: s\nskip: skip_past_last_event\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1 a2 b1 a3 b2")).matches == Sorted({"a1 b1", "a3 b2"}));
}

TEST_CASE("Skip: a finished match waits for an earlier run, then prunes it") {
  // Flink's example: a/b then c with the same price; b1 c1 completes before a1's run.
  const std::string p =
      "id: s\nskip: skip_past_last_event\nsequence:\n"
      "  - begin: ab\n    where: name == 'a' || name == 'b'\n"
      "  - followed_by: c\n    where: name == 'c' && price == $ab[0].price\n";
  std::vector<std::string> events = {vigil::testing::Ev("a1", 1, "a", 1),
                                     vigil::testing::Ev("b1", 2, "b", 2),
                                     vigil::testing::Ev("c1", 3, "c", 2),
                                     vigil::testing::Ev("c2", 4, "c", 1)};
  // b1 c1 completes first but is held while a1's earlier run is alive; when a1 c2 completes
  // it is released first, and skipping past c2 prunes the held b1 c1.
  CHECK(RunPattern(p, events).matches == Matches{"a1 c2"});
}

TEST_CASE("Skip: skipping to a stage that took nothing, or to the match's own start, skips nothing") {
  const std::string stages =
      "sequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n    optional: true\n"
      "  - followed_by: c\n    where: name == 'c'\n";
  CHECK(RunPattern("id: s\nskip: {skip_to_last: b}\n" + stages, Stream("a1 a2 c1")).matches ==
        Sorted({"a1 c1", "a2 c1"}));
  CHECK(RunPattern("id: s\nskip: {skip_to_first: a}\n" + stages, Stream("a1 a2 c1")).matches ==
        Sorted({"a1 c1", "a2 c1"}));
  CHECK(RunPattern("id: s\nskip: skip_past_last_event\n" + stages, Stream("a1 a2 c1")).matches ==
        Matches{"a1 c1"});
}

TEST_CASE("Skip: matches held for an earlier run are released at the end of input") {
  // b1 c1 completes while a1's run (earlier) waits for a c of its price; at the end of input
  // a1's run is discarded and b1 c1 comes out.
  const std::string p =
      "id: s\nskip: skip_past_last_event\nsequence:\n"
      "  - begin: ab\n    where: name == 'a' || name == 'b'\n"
      "  - followed_by: c\n    where: name == 'c' && price == $ab[0].price\n";
  std::vector<std::string> events = {vigil::testing::Ev("a1", 1, "a", 1),
                                     vigil::testing::Ev("b1", 2, "b", 2),
                                     vigil::testing::Ev("c1", 3, "c", 2)};
  CHECK(RunPattern(p, events).matches == Matches{"b1 c1"});
}

TEST_CASE("Groups: groups nest") {
  const std::string p =
      "id: nest\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: outer\n    group:\n"
      "      - begin: b\n        where: name == 'b'\n"
      "      - followed_by: inner\n        times: 2\n        group:\n"
      "          - begin: c\n            where: name == 'c'\n"
      "          - next: d\n            where: name == 'd'\n"
      "  - followed_by: e\n    where: name == 'e'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1 d1 x1 c2 d2 e1")).matches == Matches{"a1 b1 c1 d1 c2 d2 e1"});
}

TEST_CASE("Within: a bare integer is milliseconds") {
  const std::string p =
      "id: w\nwithin: 10\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1@0 b1@9 a2@20 b2@30")).matches == Matches{"a1 b1"});
}

TEST_CASE("Groups: a group's quantifier applies to the whole group") {
  const std::string p =
      "id: grp\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - followed_by: g\n    one_or_more: true\n    group:\n"
      "      - begin: b\n        where: name == 'b'\n"
      "      - next: c\n        where: name == 'c'\n"
      "  - followed_by: d\n    where: name == 'd'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1 b2 c2 d1")).matches ==
        Sorted({"a1 b1 c1 d1", "a1 b1 c1 b2 c2 d1"}));
}

TEST_CASE("Groups: times on a group repeats the inner sequence") {
  const std::string p =
      "id: grp\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - next: g\n    times: 2\n    group:\n"
      "      - begin: b\n        where: name == 'b'\n"
      "      - next: c\n        where: name == 'c'\n";
  CHECK(RunPattern(p, Stream("a1 b1 c1 b2 c2 b3 c3")).matches == Matches{"a1 b1 c1 b2 c2"});
}

TEST_CASE("Time: events within the allowed out-of-orderness are matched in event-time order") {
  const std::string p =
      "id: o\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - next: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("b1@2 a1@1"), 5).matches == Matches{"a1 b1"});
  auto in_order_only = RunPattern(p, Stream("b1@2 a1@1"), 0);
  CHECK(in_order_only.matches.empty());
  REQUIRE(in_order_only.problems.size() == 1);
  CHECK(in_order_only.problems[0].rfind("late: ", 0) == 0);
}

TEST_CASE("Time: equal timestamps keep their arrival order") {
  const std::string p =
      "id: o\nsequence:\n  - begin: a\n    where: name == 'a'\n"
      "  - next: b\n    where: name == 'b'\n";
  CHECK(RunPattern(p, Stream("a1@5 b1@5"), 3).matches == Matches{"a1 b1"});
  CHECK(RunPattern(p, Stream("b1@5 a1@5"), 3).matches.empty());
}

TEST_SUITE_END();
