// `vigil replay` end to end: the shipped fraud rules against their samples, and how bad input
// is reported.
#include "app/replay.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/generated_stream.h"
#include "support/temp_dir.h"

TEST_SUITE_BEGIN("app");

namespace {

namespace fs = std::filesystem;

struct ReplayRun {
  int exit_code;
  std::string out;
  std::string err;
};

ReplayRun Replay(const vigil::app::ReplayOptions& options) {
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  std::FILE* out = open_memstream(&out_buf, &out_len);
  std::FILE* err = open_memstream(&err_buf, &err_len);
  const int code = vigil::app::RunReplay(options, out, err);
  std::fclose(out);
  std::fclose(err);
  ReplayRun run{code, std::string(out_buf, out_len), std::string(err_buf, err_len)};
  std::free(out_buf);
  std::free(err_buf);
  return run;
}

ReplayRun Replay(const std::string& patterns, const std::string& events, size_t workers = 1) {
  vigil::app::ReplayOptions options;
  options.pattern_paths = {patterns};
  options.events_path = events;
  options.workers = workers;
  return Replay(options);
}

// Worker counts every multi-worker check runs with: one (no threads), even, odd.
constexpr size_t kWorkerCounts[] = {1, 2, 4, 7};

std::vector<std::string> SortedLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using vigil::testing::GeneratedStream;
using vigil::testing::TempDir;

const fs::path kPatterns = fs::path(VIGIL_SOURCE_DIR) / "patterns";

}  // namespace

TEST_CASE("Replay: every shipped rule finds exactly its expected matches") {
  int rules = 0;
  for (const auto& entry : fs::directory_iterator(kPatterns)) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string stem = entry.path().stem().string();
    CAPTURE(stem);
    const fs::path events = kPatterns / (stem + ".events.ndjson");
    const fs::path expected = kPatterns / (stem + ".expected.ndjson");
    REQUIRE(fs::exists(events));
    REQUIRE(fs::exists(expected));
    const auto want = SortedLines(ReadFile(expected));
    CHECK(!want.empty());
    for (const size_t workers : kWorkerCounts) {
      CAPTURE(workers);
      ReplayRun run = Replay(entry.path().string(), events.string(), workers);
      CHECK(run.exit_code == 0);
      CHECK(run.err == "");
      CHECK(SortedLines(run.out) == want);
    }
    ++rules;
  }
  CHECK(rules >= 5);
}

TEST_CASE("Replay: all rules at once over all samples find the union of their matches") {
  TempDir dir;
  std::vector<std::string> want;
  std::vector<std::pair<int64_t, std::string>> events;  // (ts, line), merged in time order
  for (const auto& entry : fs::directory_iterator(kPatterns)) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string stem = entry.path().stem().string();
    for (const auto& l : SortedLines(ReadFile(kPatterns / (stem + ".expected.ndjson")))) want.push_back(l);
    std::istringstream in(ReadFile(kPatterns / (stem + ".events.ndjson")));
    for (std::string line; std::getline(in, line);) {
      const size_t at = line.find("\"ts\":");
      REQUIRE(at != std::string::npos);
      events.emplace_back(std::stoll(line.substr(at + 5)), line);
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string merged;
  for (const auto& e : events) merged += e.second + "\n";
  std::sort(want.begin(), want.end());
  const std::string all = dir.Write("all.ndjson", merged);
  for (const size_t workers : kWorkerCounts) {
    CAPTURE(workers);
    ReplayRun run = Replay(kPatterns.string(), all, workers);
    CHECK(run.exit_code == 0);
    CHECK(SortedLines(run.out) == want);
  }
}

TEST_CASE("Replay: the same matches and reports for every worker count on a generated stream") {
  TempDir dir;
  vigil::app::ReplayOptions options;
  options.pattern_paths = {kPatterns.string()};
  options.events_path = dir.Write("generated.ndjson", GeneratedStream(20000, 7));
  options.max_out_of_orderness_ms = 10000;
  options.sort = true;
  options.workers = 1;
  const ReplayRun one = Replay(options);
  REQUIRE(one.exit_code == 0);
  for (const char* rule : {"card-testing", "impossible-travel", "velocity", "account-takeover",
                           "brute-force"}) {
    CAPTURE(rule);
    CHECK(one.out.find(std::string("\"pattern\":\"") + rule + "\"") != std::string::npos);
  }
  CHECK(one.err.find("late event") != std::string::npos);
  for (const size_t workers : {2, 4, 7}) {
    CAPTURE(workers);
    options.workers = workers;
    const ReplayRun many = Replay(options);
    CHECK(many.exit_code == 0);
    CHECK(many.out == one.out);  // --sort: byte for byte
    CHECK(many.err == one.err);  // decided where events enter, in input order, for any N
  }
}

TEST_CASE("Replay: bad event lines are reported with their line number and skipped") {
  TempDir dir;
  const std::string pattern = dir.Write("p.yaml",
                                        "id: ab\nkey: k\nsequence:\n  - begin: a\n    where: v == 'a'\n"
                                        "  - followed_by: b\n    where: v == 'b'\n");
  const std::string events = dir.Write("e.ndjson",
                                       "{\"k\":1,\"ts\":1,\"v\":\"a\"}\n"
                                       "not json\n"
                                       "{\"k\":1,\"v\":\"b\"}\n"
                                       "{\"k\":1,\"ts\":\"yesterday\",\"v\":\"b\"}\n"
                                       "\n"
                                       "{\"ts\":3,\"v\":\"b\"}\n"
                                       "{\"k\":1,\"ts\":5,\"v\":\"b\"}\n"
                                       "{\"k\":1,\"ts\":4,\"v\":\"b\"}\n");
  ReplayRun run = Replay(pattern, events);
  CHECK(run.exit_code == 0);
  CHECK(run.out == "{\"pattern\":\"ab\",\"key\":1,\"match\":{\"a\":[{\"k\":1,\"ts\":1,\"v\":\"a\"}],"
                   "\"b\":[{\"k\":1,\"ts\":5,\"v\":\"b\"}]}}\n");
  CHECK(run.err.find(events + ":2: ") != std::string::npos);
  CHECK(run.err.find(events + ":3: missing time field 'ts'") != std::string::npos);
  CHECK(run.err.find(events + ":4: time field 'ts' is not an RFC 3339 date-time") != std::string::npos);
  CHECK(run.err.find(events + ":6: pattern ab: missing key field 'k'") != std::string::npos);
  CHECK(run.err.find(events + ":8: late event: time 4 is below the watermark 5") != std::string::npos);
}

TEST_CASE("Replay: an invalid pattern stops the run with exit status 2") {
  TempDir dir;
  const std::string pattern = dir.Write("bad.yaml", "id: p\nsequence:\n  - begin: a\n    where: x >\n");
  const std::string events = dir.Write("e.ndjson", "{\"ts\":1}\n");
  ReplayRun run = Replay(pattern, events);
  CHECK(run.exit_code == 2);
  CHECK(run.out.empty());
  CHECK(run.err == pattern + ":4:15: unexpected end of expression\n");
}

TEST_CASE("Replay: the key keeps its JSON type and RFC 3339 times are read") {
  TempDir dir;
  const std::string pattern = dir.Write("p.yaml", "id: one\nkey: user.id\nsequence:\n  - begin: a\n");
  const std::string events = dir.Write(
      "e.ndjson", "{\"user\":{\"id\":\"u\\\"1\"},\"ts\":\"2024-05-01T12:00:00.250Z\"}\n");
  ReplayRun run = Replay(pattern, events);
  CHECK(run.exit_code == 0);
  CHECK(run.out == "{\"pattern\":\"one\",\"key\":\"u\\\"1\",\"match\":{\"a\":[{\"user\":{\"id\":\"u\\\"1\"},"
                   "\"ts\":\"2024-05-01T12:00:00.250Z\"}]}}\n");
}

TEST_CASE("Replay: a timed-out partial match is a match line with \"timeout\":true") {
  TempDir dir;
  const std::string pattern = dir.Write(
      "t.yaml",
      "id: t\nwithin: 5ms\ntimeouts: true\nsequence:\n  - begin: a\n    where: v == 'a'\n"
      "  - followed_by: b\n    where: v == 'b'\n");
  const std::string events = dir.Write("e.ndjson", "{\"ts\":1,\"v\":\"a\"}\n{\"ts\":9,\"v\":\"c\"}\n");
  ReplayRun run = Replay(pattern, events);
  CHECK(run.exit_code == 0);
  CHECK(run.out ==
        "{\"pattern\":\"t\",\"key\":null,\"match\":{\"a\":[{\"ts\":1,\"v\":\"a\"}]},\"timeout\":true}\n");
}

TEST_CASE("Replay: a pattern that explodes is held to its limit and the drop is reported") {
  TempDir dir;
  const std::string pattern = dir.Write(
      "boom.yaml",
      "id: boom\nsequence:\n  - begin: a\n    one_or_more: true\n    allow_combinations: true\n"
      "  - followed_by_any: b\n    where: kind == 'b'\n");
  std::string events;
  for (int i = 0; i < 30; ++i) events += "{\"ts\":" + std::to_string(i) + ",\"kind\":\"a\"}\n";
  events += "{\"ts\":100,\"kind\":\"b\"}\n";
  vigil::app::ReplayOptions options;
  options.pattern_paths = {pattern};
  options.events_path = dir.Write("e.ndjson", events);
  options.max_partial_matches_per_key = 100;
  ReplayRun run = Replay(options);
  CHECK(run.exit_code == 0);
  // At most the limit of runs (plus the final event's own run) can complete on the b event.
  CHECK(SortedLines(run.out).size() <= 101);
  CHECK(!run.out.empty());
  CHECK(run.err.find("partial matches dropped: a key held more than 100 for one pattern") !=
        std::string::npos);
}

TEST_SUITE_END();
