// Crashes and damaged checkpoints against the real `vigil serve`: whatever happens to the
// process, the alerts file ends with every alert of the input exactly once, the alerts that
// `vigil replay` finds over the same events.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/generated_stream.h"
#include "support/expected_alerts.h"
#include "support/server_process.h"
#include "support/temp_dir.h"

TEST_SUITE_BEGIN("integration");

namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using vigil::testing::AlertsAsMatches;
using vigil::testing::Events;
using vigil::testing::Expected;
using vigil::testing::LateCount;
using vigil::testing::Lines;
using vigil::testing::ReadAll;
using vigil::testing::ServerProcess;
using vigil::testing::TempDir;

constexpr size_t kBatch = 250;

uint64_t Metric(const ServerProcess& server, const std::string& name) {
  const std::optional<uint64_t> value = server.Metric(name);
  REQUIRE_MESSAGE(value.has_value(), name);
  return *value;
}

uint64_t InputPosition(const ServerProcess& server) { return Metric(server, "vigil_input_position"); }

std::unique_ptr<ServerProcess> Start(const std::string& data, size_t workers,
                                     const std::string& checkpoint_interval = "150ms",
                                     std::vector<std::string> extra = {}) {
  const std::string patterns = (fs::path(data).parent_path() / "patterns").string();
  std::vector<std::string> args = {"--patterns-dir", patterns, "--workers", std::to_string(workers),
                                   "--max-out-of-orderness", "10s", "--idle-timeout", "0",
                                   "--checkpoint-interval", checkpoint_interval};
  args.insert(args.end(), extra.begin(), extra.end());
  auto server = std::make_unique<ServerProcess>(data, args);
  REQUIRE(server->started());
  return server;
}

std::string Batch(const std::vector<std::string>& events, size_t from) {
  std::string body;
  for (size_t i = from; i < std::min(events.size(), from + kBatch); ++i) body += events[i] + "\n";
  return body;
}

// Posts events[from..] in batches; true when all were taken, false when the server died.
bool Feed(const ServerProcess& server, const std::vector<std::string>& events, size_t* sent) {
  while (*sent < events.size()) {
    try {
      const auto r = server.Request(http::verb::post, "/events", Batch(events, *sent), "application/x-ndjson");
      if (r.status != 202) return false;
    } catch (const std::exception&) {
      return false;
    }
    *sent = std::min(events.size(), *sent + kBatch);
  }
  return true;
}

// The path of the newest checkpoint of a stopped server, and of its previous one.
std::vector<fs::path> Checkpoints(const std::string& data) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(fs::path(data) / "state" / "checkpoints")) out.push_back(entry.path());
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace

TEST_CASE("Recovery: killed at random points while fed, restarted each time, every alert exactly once") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  REQUIRE(expected.size() > 50);
  const std::string data = dir.path() + "/data";

  std::mt19937 random(20261201);
  size_t sent = 0, kills = 0;
  // Small alert files: rotations happen all along, some cut short by a kill.
  const std::vector<std::string> rotating = {"--alerts-max-file-bytes", "16384", "--alerts-keep-files", "100"};
  auto server = Start(data, 2, "150ms", rotating);
  while (sent < events.size() || kills < 10) {
    // A kill lands somewhere in the next requests: inside one, between two, in a checkpoint.
    const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 60000)(random));
    std::thread killer([pid = server->pid(), delay] {
      std::this_thread::sleep_for(delay);
      ::kill(pid, SIGKILL);
    });
    const size_t before = sent;
    Feed(*server, events, &sent);
    killer.join();
    server->Kill();
    ++kills;
    server = Start(data, 1 + kills % 3, "150ms", rotating);  // the worker count changes too
    // A request the kill cut short may or may not have been logged: the input position says.
    const uint64_t position = InputPosition(*server);
    if (position > sent) {
      CHECK(position == std::min(events.size(), sent + kBatch));
      sent = position;
    } else {
      CHECK(position == sent);
    }
    CAPTURE(before);
  }
  REQUIRE(Feed(*server, events, &sent));
  REQUIRE(server->Request(http::verb::get, "/alerts?limit=1").status == 200);  // all matched
  CHECK(server->Stop() == 0);
  CHECK(kills >= 10);
  CHECK(AlertsAsMatches(data + "/alerts.ndjson") == expected);
  // Late events are kept once each too.
  const size_t late = LateCount(dir);
  CHECK(late > 10);
  CHECK(Lines(ReadAll(data + "/late-events.ndjson")).size() == late);
}

TEST_CASE("Recovery: a damaged newest checkpoint is skipped for the one before, alerts still exact") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  enum class Damage { kTruncatedMeta, kFlippedMeta, kFlippedTable, kTruncatedManifest };
  for (const Damage damage : {Damage::kTruncatedMeta, Damage::kFlippedMeta, Damage::kFlippedTable,
                              Damage::kTruncatedManifest}) {
    CAPTURE(static_cast<int>(damage));
    const std::string data = dir.path() + "/data" + std::to_string(static_cast<int>(damage));
    size_t sent = 0;
    // Checkpoints only when asked, so the newest has files of its own to damage.
    auto server = Start(data, 2, "1h");
    // Two thirds of the events, each third followed by a checkpoint.
    std::vector<std::string> first(events.begin(), events.begin() + events.size() / 3);
    REQUIRE(Feed(*server, first, &sent));
    REQUIRE(server->Request(http::verb::post, "/checkpoints").status == 201);
    first.assign(events.begin(), events.begin() + 2 * events.size() / 3);
    REQUIRE(Feed(*server, first, &sent));
    REQUIRE(server->Request(http::verb::post, "/checkpoints").status == 201);
    server->Kill();

    const fs::path newest = Checkpoints(data).front();
    auto flip = [](const fs::path& file) {
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      const auto size = static_cast<std::streamoff>(fs::file_size(file));
      for (std::streamoff at = size / 3; at < size / 3 + 8 && at < size; ++at) {
        f.seekg(at);
        const char c = static_cast<char>(f.get());
        f.seekp(at);
        f.put(static_cast<char>(c ^ 0x5a));
      }
    };
    switch (damage) {
      case Damage::kTruncatedMeta:
        fs::resize_file(newest / "CHECKPOINT", fs::file_size(newest / "CHECKPOINT") / 2);
        break;
      case Damage::kFlippedMeta:
        flip(newest / "CHECKPOINT");
        break;
      case Damage::kFlippedTable: {
        // The table file only this checkpoint has (the older ones share the rest).
        fs::path table;
        for (const auto& entry : fs::directory_iterator(newest)) {
          if (entry.path().extension() == ".sst" && fs::hard_link_count(entry.path()) <= 2 &&
              (table.empty() || entry.path() > table)) {
            table = entry.path();
          }
        }
        REQUIRE(!table.empty());
        flip(table);
        break;
      }
      case Damage::kTruncatedManifest:
        for (const auto& entry : fs::directory_iterator(newest)) {
          if (entry.path().filename().string().starts_with("MANIFEST")) fs::resize_file(entry.path(), 10);
        }
        break;
    }
    server = Start(data, 3, "1h");
    const std::string listed = server->Request(http::verb::get, "/checkpoints").body;
    CHECK(listed.find("\"id\":" + std::to_string(std::stoull(newest.filename().string())) + ",") ==
          std::string::npos);
    REQUIRE(Feed(*server, events, &sent));
    REQUIRE(server->Request(http::verb::get, "/alerts?limit=1").status == 200);
    CHECK(server->Stop() == 0);
    CHECK(AlertsAsMatches(data + "/alerts.ndjson") == expected);
  }
}

TEST_CASE("Recovery: state several times the memory budget gives the same alerts, across a crash") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  const std::string data = dir.path() + "/data";
  // The stream's state peaks at a few hundred KiB: a budget of 32 KiB keeps most keys on disk.
  const std::vector<std::string> budget = {"--memory-budget-bytes", "32768"};
  size_t sent = 0;
  auto server = Start(data, 2, "150ms", budget);
  std::vector<std::string> half(events.begin(), events.begin() + events.size() / 2);
  REQUIRE(Feed(*server, half, &sent));
  REQUIRE(server->Request(http::verb::get, "/alerts?limit=1").status == 200);
  CHECK(Metric(*server, "vigil_state_evictions_total") > 100);
  CHECK(Metric(*server, "vigil_state_read_backs_total") > 100);
  CHECK(Metric(*server, "vigil_state_lost_keys_total") == 0);
  server->Kill();
  server = Start(data, 3, "150ms", budget);
  CHECK(Metric(*server, "vigil_state_spilled_keys") > 0);  // restored beyond the budget: left on disk
  REQUIRE(Feed(*server, events, &sent));
  REQUIRE(server->Request(http::verb::get, "/alerts?limit=1").status == 200);
  CHECK(server->Stop() == 0);
  CHECK(AlertsAsMatches(data + "/alerts.ndjson") == expected);
}

TEST_CASE("Recovery: a pattern change is replayed where it was made when the checkpoint after it is lost") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  Expected(dir, events);  // writes the rules
  const std::string burst =
      "id: payment-burst\nkey: card_id\nwithin: 5s\nsequence:\n"
      "  - begin: pay\n    where: type == 'payment'\n    times: 3\n";
  // The same input and the same change, once without a crash and once with one that loses the
  // checkpoint taken at the change: recovery must replay the change at its place.
  auto run = [&](const std::string& data, bool crash) {
    size_t sent = 0;
    auto server = Start(data, 2, "1h");
    REQUIRE(Feed(*server, std::vector<std::string>(events.begin(), events.begin() + events.size() / 3), &sent));
    REQUIRE(server->Request(http::verb::post, "/patterns", burst, "application/yaml").status == 201);
    REQUIRE(Feed(*server, std::vector<std::string>(events.begin(), events.begin() + 2 * events.size() / 3), &sent));
    if (crash) {
      server->Kill();
      const fs::path newest = Checkpoints(data).front();
      fs::resize_file(newest / "CHECKPOINT", 3);
      server = Start(data, 3, "1h");
    }
    REQUIRE(Feed(*server, events, &sent));
    REQUIRE(server->Request(http::verb::get, "/alerts?limit=1").status == 200);
    CHECK(server->Stop() == 0);
    return AlertsAsMatches(data + "/alerts.ndjson", true);
  };
  const std::vector<std::string> uninterrupted = run(dir.path() + "/a", false);
  CHECK(std::count_if(uninterrupted.begin(), uninterrupted.end(), [](const std::string& a) {
          return a.find("payment-burst") != std::string::npos;
        }) > 10);
  CHECK(run(dir.path() + "/b", true) == uninterrupted);
}
