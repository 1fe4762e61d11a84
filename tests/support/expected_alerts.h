#pragma once
// What a run of `vigil serve` should have written, and the alerts it did write in a form to
// compare with: the generated stream with an event that closes every window, the shipped rules
// plus one with timeouts, `vigil replay`'s matches over them, alerts in replay's shape.

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

namespace vigil::testing {

namespace fs = std::filesystem;

// The shipped rules and one that reports timeouts whose events are also those of matches (a
// match and a timeout must not share an alert id).
inline std::string Patterns(const TempDir& dir) {
  const fs::path patterns = fs::path(dir.path()) / "patterns";
  fs::create_directories(patterns);
  for (const auto& entry : fs::directory_iterator(fs::path(VIGIL_SOURCE_DIR) / "patterns")) {
    if (entry.path().extension() == ".yaml") fs::copy_file(entry.path(), patterns / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
  std::ofstream(patterns / "unanswered-login.yaml")
      << "id: unanswered-login\nkey: user\nwithin: 30s\ntimeouts: true\nsequence:\n"
         "  - begin: login\n    where: type == 'login'\n"
         "  - followed_by: moves\n    where: type == 'transfer'\n    one_or_more: true\n";
  return patterns.string();
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The stream the server is fed: the generated events, then one far in the future that takes
// the watermark past every window, so the server closes them as replay's end of input does.
inline std::vector<std::string> Events() {
  std::vector<std::string> events = Lines(vigil::testing::GeneratedStream(6000, 11));
  events.push_back("{\"ts\":1917200000000,\"card_id\":\"end\"}");
  return events;
}

// What `vigil replay` writes for the events with the rules of Patterns(dir) (and any other
// file the test put beside them), sorted. `flags`: more of replay's, as the server got them.
inline std::vector<std::string> Expected(const TempDir& dir, const std::vector<std::string>& events,
                                         const std::string& flags = "") {
  std::string text;
  for (const std::string& e : events) text += e + "\n";
  const std::string path = dir.Write("events.ndjson", text);
  const std::string command = std::string(VIGIL_BINARY_DIR) + "/src/app/vigil replay --patterns " +
                              Patterns(dir) + " --events " + path + " --max-out-of-orderness 10s --sort " + flags +
                              " 2>/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  REQUIRE(::pclose(pipe) == 0);
  return Lines(out);
}

// How many of the events `vigil replay` reports late.
inline size_t LateCount(const TempDir& dir) {
  const std::string command = std::string(VIGIL_BINARY_DIR) + "/src/app/vigil replay --patterns " + Patterns(dir) +
                              " --events " + dir.path() + "/events.ndjson --max-out-of-orderness 10s 2>&1 >/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe);
  size_t late = 0;
  char line[4096];
  while (std::fgets(line, sizeof line, pipe)) late += std::string_view(line).find("late event") != std::string_view::npos;
  ::pclose(pipe);
  return late;
}

// Alerts in replay's shape: without the id and the fields after the match, sorted. Also checks
// that no id appears twice.
inline std::vector<std::string> AsMatches(const std::vector<std::string>& alerts, bool with_version = false) {
  std::vector<std::string> out, ids;
  for (const std::string& alert : alerts) {
    REQUIRE(alert.starts_with("{\"id\":\""));
    ids.push_back(alert.substr(7, 16));
    const size_t match_start = alert.find("\"pattern\":");
    const size_t match_end = alert.find(with_version ? ",\"first_event_time\":" : ",\"version\":");
    REQUIRE(match_end != std::string::npos);
    out.push_back("{" + alert.substr(match_start, match_end - match_start) + "}");
  }
  std::sort(ids.begin(), ids.end());
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  std::sort(out.begin(), out.end());
  return out;
}

// The alerts file and its rotated files, AsMatches.
// Every rotated file counts, and they are numbered without a gap.
inline std::vector<std::string> AlertsAsMatches(const std::string& path, bool with_version = false) {
  std::string all = ReadAll(path);
  const std::string prefix = fs::path(path).filename().string() + ".";
  size_t rotated = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || name.find_first_not_of("0123456789", prefix.size()) != std::string::npos) continue;
    all += ReadAll(entry.path().string());
    ++rotated;
  }
  CHECK_MESSAGE((rotated == 0 || fs::exists(path + "." + std::to_string(rotated))), "a gap in the rotated files");
  return AsMatches(Lines(all), with_version);
}

}  // namespace vigil::testing
