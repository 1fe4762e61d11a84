// `vigil serve` on a real Kafka broker (scripts/kafka.sh; the broker's address in
// VIGIL_TEST_KAFKA): events from an input topic, alerts read back read_committed and compared
// with `vigil replay` over the same events, through crashes; malformed records in the
// dead-letter topic. kcat produces and consumes on the test's side.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/expected_alerts.h"
#include "support/server_process.h"
#include "support/temp_dir.h"

TEST_SUITE_BEGIN("kafka");

namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using vigil::testing::AsMatches;
using vigil::testing::Events;
using vigil::testing::Expected;
using vigil::testing::Lines;
using vigil::testing::ServerProcess;
using vigil::testing::TempDir;

std::string Broker() {
  const char* broker = std::getenv("VIGIL_TEST_KAFKA");
  REQUIRE_MESSAGE(broker != nullptr,
                  "the Kafka tests need a broker: scripts/kafka.sh start, then VIGIL_TEST_KAFKA=127.0.0.1:9092");
  return broker;
}

// Topic names of their own for each test run.
std::string Prefix(const std::string& test) {
  return "t" + std::to_string(std::random_device{}() % 1000000) + "-" + test;
}

// Whether kcat took them all. No doctest assertion: also called on a thread of the test's.
// `kcat_flags`: more of kcat's, such as a key delimiter.
bool Produce(const std::string& broker, const std::string& topic, const std::vector<std::string>& lines, size_t from,
             size_t to, const std::string& kcat_flags = "") {
  const std::string command = "kcat -P -b " + broker + " -t " + topic + " " + kcat_flags + " 2>/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "w");
  if (!pipe) return false;
  for (size_t i = from; i < to; ++i) {
    std::fputs(lines[i].c_str(), pipe);
    std::fputc('\n', pipe);
  }
  return ::pclose(pipe) == 0;
}

// Every committed record of `topic` as "headers<TAB>value".
std::vector<std::string> Consume(const std::string& topic) {
  const std::string command = "kcat -C -b " + Broker() + " -t " + topic +
                              " -X isolation.level=read_committed -e -q -f '%h\\t%s\\n' 2>/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  ::pclose(pipe);
  return Lines(out);
}

// The alert JSON of each committed record of the alerts topic, waiting (up to a minute) until
// there are `count`.
std::vector<std::string> Alerts(const std::string& topic, size_t count) {
  std::vector<std::string> alerts;
  for (int attempt = 0; attempt < 120; ++attempt) {
    alerts.clear();
    for (const std::string& record : Consume(topic)) alerts.push_back(record.substr(record.find('\t') + 1));
    if (alerts.size() >= count) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return alerts;
}

std::unique_ptr<ServerProcess> Start(const std::string& data, const std::string& prefix, const std::string& patterns,
                                     size_t workers, const std::string& group_suffix = "",
                                     const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args{
                "--patterns-dir", patterns, "--workers", std::to_string(workers), "--max-out-of-orderness", "10s",
                "--idle-timeout", "0", "--checkpoint-interval", "300ms", "--kafka-brokers", Broker(),
                "--kafka-input-topics", prefix + "-events", "--kafka-alerts-topic", prefix + "-alerts",
                "--kafka-dead-letter-topic", prefix + "-dead", "--kafka-late-topic", prefix + "-late",
                "--kafka-group-id", prefix + group_suffix, "--kafka-rules-topic", prefix + "-rules",
                "--kafka-topic-partitions", "1", "--kafka-idle-timeout", "1s",
                // The broker, kcat and sanitizers share two CPUs here: no pattern is to be
                // judged on its CPU cost (a disabled one would change the alerts compared).
                "--max-pattern-cpu-us", "0"};
  args.insert(args.end(), extra.begin(), extra.end());  // later flags win
  auto server = std::make_unique<ServerProcess>(data, args);
  REQUIRE(server->started());
  return server;
}

}  // namespace

TEST_CASE("Kafka: alerts of an input topic, read committed, are replay's, and malformed records are dead letters") {
  TempDir dir;
  std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  const std::string prefix = Prefix("e2e");
  auto server = Start(dir.path() + "/data", prefix, dir.path() + "/patterns", 2);
  REQUIRE(Produce(Broker(), prefix + "-events", events, 0, events.size()));
  REQUIRE(Produce(Broker(), prefix + "-events", {"not json at all"}, 0, 1));
  CHECK(AsMatches(Alerts(prefix + "-alerts", expected.size())) == expected);
  std::vector<std::string> dead;
  for (int attempt = 0; attempt < 60 && dead.empty(); ++attempt) {
    dead = Consume(prefix + "-dead");
    if (dead.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].find("vigil-error=") != std::string::npos);
  CHECK(dead[0].ends_with("\tnot json at all"));
  CHECK(server->Request(http::verb::get, "/readyz").status == 200);
  const std::string metrics = server->Request(http::verb::get, "/metrics").body;
  CHECK(metrics.find("vigil_kafka_commit_duration_seconds_bucket{le=\"+Inf\"} ") != std::string::npos);
  CHECK(metrics.find("vigil_kafka_commit_duration_seconds_count 0\n") == std::string::npos);
  CHECK(server->Stop() == 0);
}

namespace {

// Kills vigil 5 times at random points while a producer sends `events` in the background,
// restarting it with 1 to 3 workers and `extra` flags; returns the committed alerts once at
// least `distinct` different ones are in.
std::vector<std::string> AlertsThroughKills(const TempDir& dir, const std::string& prefix,
                                            const std::vector<std::string>& events, size_t distinct,
                                            const std::vector<std::string>& extra = {}) {
  const std::string data = dir.path() + "/data";
  const std::string patterns = dir.path() + "/patterns";
  // The producer goes on in the background, in batches, whatever happens to vigil.
  std::atomic<bool> produced{true};
  std::jthread producer([&, broker = Broker()] {  // joined on every way out
    for (size_t from = 0; from < events.size(); from += 300) {
      if (!Produce(broker, prefix + "-events", events, from, std::min(events.size(), from + 300))) produced = false;
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
  });
  std::mt19937 random(7);
  auto server = Start(data, prefix, patterns, 2, "", extra);
  for (int kill = 0; kill < 5; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 1500)(random)));
    server->Kill();
    server = Start(data, prefix, patterns, 1 + kill % 3, "", extra);
  }
  producer.join();
  CHECK(produced);
  std::vector<std::string> alerts;
  for (int attempt = 0; attempt < 120; ++attempt) {
    alerts = Alerts(prefix + "-alerts", distinct);
    std::set<std::string> ids;
    for (const std::string& alert : alerts) ids.insert(alert.substr(0, alert.find(',')));
    if (ids.size() >= distinct) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  CHECK(server->Stop() == 0);
  return alerts;
}

}  // namespace

TEST_CASE("Kafka: killed at random points while the producer runs, every alert committed exactly once") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  const std::vector<std::string> alerts = AlertsThroughKills(dir, Prefix("crash"), events, expected.size());
  CHECK(AsMatches(alerts) == expected);  // none lost, none twice (AsMatches checks the ids)
}

TEST_CASE("Kafka: at least once, killed at random points while the producer runs, no alert lost") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  std::vector<std::string> alerts = AlertsThroughKills(dir, Prefix("alo-crash"), events, expected.size(),
                                                       {"--processing-guarantee", "at_least_once"});
  // Some may come twice: the output of input read after the last commit before a kill.
  const size_t received = alerts.size();
  std::sort(alerts.begin(), alerts.end(), [](const std::string& a, const std::string& b) {
    return a.substr(0, a.find(',')) < b.substr(0, b.find(','));
  });
  alerts.erase(std::unique(alerts.begin(), alerts.end(),
                           [](const std::string& a, const std::string& b) {
                             return a.substr(0, a.find(',')) == b.substr(0, b.find(','));
                           }),
               alerts.end());
  const size_t twice = received - alerts.size();
  MESSAGE(twice, " alerts came twice");
  CHECK(AsMatches(alerts) == expected);
}

TEST_CASE("Kafka: killed while a checkpoint waits for the commit of its output, the one before is restored, no alert lost") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  const std::string prefix = Prefix("awaits");
  const std::string data = dir.path() + "/data";
  const std::string patterns = dir.path() + "/patterns";
  const size_t half = events.size() / 2;
  auto server = Start(data, prefix, patterns, 2);
  REQUIRE(Produce(Broker(), prefix + "-events", events, 0, half));
  for (int i = 0; i < 120 && server->Metric("vigil_kafka_records_in_total").value_or(0) < half; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  REQUIRE(server->Stop() == 0);
  // No commit after those at start-up: the periodic checkpoint taken once the second half is
  // read (its interval leaves the time to read it) is written, and waits.
  REQUIRE(Produce(Broker(), prefix + "-events", events, half, events.size()));
  server = Start(data, prefix, patterns, 2, "", {"--kafka-commit-interval", "1h", "--checkpoint-interval", "10s"});
  for (int i = 0; i < 120 && server->Metric("vigil_kafka_records_in_total").value_or(0) < events.size() - half; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(server->Metric("vigil_kafka_records_in_total") == events.size() - half);
  REQUIRE(server->Metric("vigil_checkpoint_awaiting_commit") == 0);  // not taken before that
  for (int i = 0; i < 120 && server->Metric("vigil_checkpoint_awaiting_commit").value_or(0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  REQUIRE(server->Metric("vigil_checkpoint_awaiting_commit") == 1);
  CHECK(Consume(prefix + "-alerts").size() < expected.size());  // the second half's are uncommitted
  server->Kill();
  server = Start(data, prefix, patterns, 2);
  CHECK(AsMatches(Alerts(prefix + "-alerts", expected.size())) == expected);
  CHECK(server->Stop() == 0);
}

TEST_CASE("Kafka: a rule uploaded on one instance is applied on another of its group, and a bad one on the topic is refused") {
  TempDir dir;
  const std::string prefix = Prefix("rules");
  const std::string empty = dir.path() + "/no-patterns";
  std::filesystem::create_directories(empty);
  // Two instances of one group: the one that gets no partition still follows the rules.
  auto first = Start(dir.path() + "/a", prefix, empty, 1, "", {"--kafka-transactional-id", prefix + "-a"});
  auto second = Start(dir.path() + "/b", prefix, empty, 1, "", {"--kafka-transactional-id", prefix + "-b"});
  const std::string rule = "id: big-payment\nkey: card_id\nsequence:\n  - begin: big\n    where: amount > 1000\n";
  const auto created = first->Request(http::verb::post, "/patterns", rule, "application/yaml");
  REQUIRE(created.status == 201);
  auto on_second = [&](const std::string& id) { return second->Request(http::verb::get, "/patterns/" + id); };
  int waited = 0;
  while (on_second("big-payment").status != 200 && waited++ < 40) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(on_second("big-payment").status == 200);
  // Same version on both: the topic numbers it.
  CHECK(first->Request(http::verb::get, "/patterns/big-payment").body.find("\"version\":1,") != std::string::npos);
  CHECK(on_second("big-payment").body.find("\"version\":1,") != std::string::npos);
  // Disabled on the second: the first follows.
  REQUIRE(second->Request(http::verb::post, "/patterns/big-payment/disable").status == 200);
  waited = 0;
  while (first->Request(http::verb::get, "/patterns/big-payment").body.find("\"enabled\":false") == std::string::npos &&
         waited++ < 40) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(first->Request(http::verb::get, "/patterns/big-payment").body.find("\"enabled\":false") != std::string::npos);
  // Straight to the topic, by hand: a document that does not compile.
  // (A file argument: kcat sends it as one record.)
  const std::string broken = dir.Write("broken.yaml", "id: broken\nsequence: [");
  REQUIRE(std::system(("kcat -P -b " + Broker() + " -t " + prefix + "-rules -k broken " + broken).c_str()) == 0);
  waited = 0;
  auto refused = [&] {
    const std::string metrics = first->Request(http::verb::get, "/metrics").body;
    return metrics.find("vigil_kafka_rules_refused_total 1") != std::string::npos;
  };
  while (!refused() && waited++ < 40) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(refused());
  CHECK(first->Request(http::verb::get, "/patterns/broken").status == 404);
  CHECK(first->Alive());
  // Deleted on the first: gone from the second.
  REQUIRE(first->Request(http::verb::delete_, "/patterns/big-payment").status == 204);
  waited = 0;
  while (on_second("big-payment").status != 404 && waited++ < 40) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(on_second("big-payment").status == 404);
  CHECK(first->Stop() == 0);
  CHECK(second->Stop() == 0);
}


namespace {

// The events with every one that could be late taken out (more than 5 s behind the largest
// time before it, half the allowed 10 s) and every time once: whatever order several
// partitions interleave them in, no event is late and the event-time order is one, so the
// alerts are replay's over the file.
std::vector<std::string> OrderFree(const std::vector<std::string>& events) {
  std::vector<std::string> out;
  std::set<int64_t> times;
  int64_t largest = 0;
  for (const std::string& e : events) {
    const int64_t ts = std::stoll(e.substr(e.find("\"ts\":") + 5));
    if (ts < largest - 5000 || !times.insert(ts).second) continue;
    largest = std::max(largest, ts);
    out.push_back(e);
  }
  return out;
}

// Produced with the card as the record key, so each card's events keep their order. Whether
// kcat took them all (called on a thread of the test's: no doctest assertion).
bool ProduceByCard(const std::string& broker, const std::string& topic, const std::vector<std::string>& lines) {
  std::vector<std::string> keyed;
  for (const std::string& line : lines) {
    const size_t at = line.find("\"card_id\":\"");
    const std::string key = at == std::string::npos ? "" : line.substr(at + 11, line.find('"', at + 11) - at - 11);
    keyed.push_back(key + "\t" + line);
  }
  return Produce(broker, topic, keyed, 0, keyed.size(), "-K '\t'");
}

}  // namespace

TEST_CASE("Kafka: three input partitions, killed twice while reading them, alerts exactly replay's") {
  TempDir dir;
  const std::vector<std::string> events = OrderFree(Events());
  const std::vector<std::string> expected = Expected(dir, events);
  REQUIRE(expected.size() > 50);
  const std::string prefix = Prefix("partitions");
  const std::string data = dir.path() + "/data";
  const std::vector<std::string> three = {"--kafka-topic-partitions", "3", "--kafka-idle-timeout", "3s"};
  auto server = Start(data, prefix, dir.path() + "/patterns", 2, "", three);
  std::atomic<bool> produced{false};
  std::jthread producer([&, broker = Broker()] { produced = ProduceByCard(broker, prefix + "-events", events); });
  std::mt19937 random(11);
  for (int kill = 0; kill < 2; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(200, 1200)(random)));
    server->Kill();
    server = Start(data, prefix, dir.path() + "/patterns", 1 + kill, "", three);
  }
  producer.join();
  CHECK(produced);
  CHECK(AsMatches(Alerts(prefix + "-alerts", expected.size())) == expected);
  // Each partition's watermark is reported.
  const std::string metrics = server->Request(http::verb::get, "/metrics").body;
  for (const char* partition : {"\"0\"", "\"1\"", "\"2\""}) {
    CHECK(metrics.find(std::string("vigil_kafka_partition_watermark_ms{topic=\"") + prefix + "-events\",partition=" +
                       partition) != std::string::npos);
  }
  CHECK(server->Stop() == 0);
}

TEST_CASE("Kafka: a backlog larger than the events in flight holds the input back, the API keeps answering, alerts exactly replay's") {
  TempDir dir;
  std::vector<std::string> events = Lines(vigil::testing::GeneratedStream(8000, 13));
  events.push_back(Events().back());  // closes every window
  // Beside the shipped rules, one that steps 500 partial matches, each with a regular
  // expression, for every event (keyed by a boolean): matching is far slower than reading
  // (some 30 us an event in a Release build, over 1 ms with sanitizers).
  std::ofstream(fs::path(vigil::testing::Patterns(dir)) / "heavy.yaml")
      << "id: heavy\nkey: card_present\nsequence:\n  - begin: a\n"
         "    where: card_id.matches('^c[0-9]+$') && amount > 0\n    one_or_more: true\n"
         "    allow_combinations: true\n  - followed_by_any: b\n    where: type == 'never'\n";
  const std::vector<std::string> expected = Expected(dir, events, "--max-partial-matches 500");
  const std::string prefix = Prefix("flood");
  // The whole backlog is in the topic before vigil starts, and vigil may hold only 512 events
  // between reading and matching.
  REQUIRE(Produce(Broker(), prefix + "-events", events, 0, events.size()));
  auto server = Start(dir.path() + "/data", prefix, dir.path() + "/patterns", 2, "",
                      {"--max-events-in-flight", "512", "--max-partial-matches", "500"});
  for (int i = 0; i < 5; ++i) {
    const auto asked = std::chrono::steady_clock::now();
    CHECK(server->Request(http::verb::get, "/healthz").status == 200);
    // Each commit waits for the events in flight to be matched (their alerts go in it).
    CHECK(std::chrono::steady_clock::now() - asked < std::chrono::seconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(AsMatches(Alerts(prefix + "-alerts", expected.size())) == expected);
  const std::string metrics = server->Request(http::verb::get, "/metrics").body;
  const std::string waits = "\nvigil_kafka_input_waits_total ";  // polls held back for room
  const size_t at = metrics.find(waits);
  REQUIRE(at != std::string::npos);
  CHECK(std::stoull(metrics.substr(at + waits.size())) > 0);
  CHECK(server->Stop() == 0);
}

TEST_CASE("Kafka: the broker restarts in the middle of a run, vigil keeps serving and waits for it, alerts exactly once") {
  TempDir dir;
  const std::vector<std::string> events = Events();
  const std::vector<std::string> expected = Expected(dir, events);
  const std::string prefix = Prefix("broker");
  auto server = Start(dir.path() + "/data", prefix, dir.path() + "/patterns", 2);
  const size_t half = events.size() / 2;
  REQUIRE(Produce(Broker(), prefix + "-events", events, 0, half));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // The broker is the one scripts/test.sh started (VIGIL_KAFKA_DIR, VIGIL_KAFKA_PORT).
  const std::string script = std::string(VIGIL_SOURCE_DIR) + "/scripts/kafka.sh";
  REQUIRE(std::system((script + " stop >/dev/null").c_str()) == 0);
  // Meanwhile the HTTP API answers at once, and says it is not ready.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  for (int i = 0; i < 5; ++i) {
    const auto asked = std::chrono::steady_clock::now();
    CHECK(server->Request(http::verb::get, "/healthz").status == 200);
    CHECK(std::chrono::steady_clock::now() - asked < std::chrono::seconds(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  CHECK(server->Request(http::verb::get, "/readyz").status == 503);
  CHECK(server->Alive());
  REQUIRE(std::system((script + " start >/dev/null").c_str()) == 0);
  REQUIRE(Produce(Broker(), prefix + "-events", events, half, events.size()));
  CHECK(AsMatches(Alerts(prefix + "-alerts", expected.size())) == expected);
  int waited = 0;
  while (server->Request(http::verb::get, "/readyz").status != 200 && waited++ < 60) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  CHECK(server->Request(http::verb::get, "/readyz").status == 200);
  const std::string metrics = server->Request(http::verb::get, "/metrics").body;
  CHECK(metrics.find("vigil_kafka_commit_duration_seconds_bucket{le=\"+Inf\"} ") != std::string::npos);
  CHECK(metrics.find("vigil_kafka_commit_duration_seconds_count 0\n") == std::string::npos);
  CHECK(server->Stop() == 0);
}

TEST_CASE("Kafka: the rules topic is the source of truth at start, a pattern only stored here is deleted") {
  TempDir dir;
  const std::string prefix = Prefix("truth");
  const std::string data = dir.path() + "/data";
  const std::string empty = dir.path() + "/no-patterns";
  std::filesystem::create_directories(empty);
  const std::string rule = "id: local-only\nkey: card_id\nsequence:\n  - begin: big\n    where: amount > 1000\n";
  {
    ServerProcess alone(data, {"--patterns-dir", empty});  // without Kafka: stored in the data directory
    REQUIRE(alone.started());
    REQUIRE(alone.Request(http::verb::post, "/patterns", rule, "application/yaml").status == 201);
    CHECK(alone.Stop() == 0);
  }
  auto server = Start(data, prefix, empty, 1);
  CHECK(server->Request(http::verb::get, "/patterns/local-only").status == 404);
  CHECK(server->Request(http::verb::post, "/events", "{\"ts\":1}\n", "application/x-ndjson").status == 409);
  CHECK(server->Stop() == 0);
}
