// `vigil serve` end to end: the real binary, real HTTP, a temporary data directory.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include <simdjson.h>

#include "support/server_process.h"
#include "support/temp_dir.h"

TEST_SUITE_BEGIN("integration");

namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using vigil::testing::ServerProcess;

using vigil::testing::TempDir;

const char* const kYaml = "application/yaml";
const char* const kNdjson = "application/x-ndjson";

const std::string kAb =
    "id: ab\nkey: k\nsequence:\n  - begin: a\n    where: v == 'a'\n"
    "  - followed_by: b\n    where: v == 'b'\n";
const std::string kCd =
    "id: cd\nkey: k\nsequence:\n  - begin: c\n    where: v == 'c'\n"
    "  - followed_by: d\n    where: v == 'd'\n";

std::string Event(int ts, const std::string& key, const std::string& v) {
  return "{\"ts\":" + std::to_string(ts) + ",\"k\":\"" + key + "\",\"v\":\"" + v + "\"}\n";
}

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("Serve: patterns are created, listed, read, replaced, disabled and deleted") {
  TempDir dir;
  ServerProcess server(dir.path());
  REQUIRE(server.started());
  CHECK(server.Request(http::verb::get, "/healthz").status == 200);
  CHECK(Has(server.Request(http::verb::get, "/readyz").body, "\"patterns\":0"));

  auto created = server.Request(http::verb::post, "/patterns", kAb, kYaml);
  CHECK(created.status == 201);
  CHECK(created.body == "{\"id\":\"ab\",\"version\":1}");
  CHECK(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 409);

  auto list = server.Request(http::verb::get, "/patterns");
  CHECK(list.status == 200);
  CHECK(Has(list.body, "\"id\":\"ab\",\"version\":1"));

  auto one = server.Request(http::verb::get, "/patterns/ab");
  CHECK(one.status == 200);
  CHECK(Has(one.body, "\"source\":\"id: ab\\nkey: k"));
  CHECK(Has(one.body, "\"compiled\":{"));

  auto replaced = server.Request(http::verb::put, "/patterns/ab", kAb, kYaml);
  CHECK(replaced.status == 200);
  CHECK(Has(replaced.body, "\"version\":2"));
  CHECK(server.Request(http::verb::put, "/patterns/cd", kCd, kYaml).status == 201);
  CHECK(server.Request(http::verb::put, "/patterns/zz", kCd, kYaml).status == 400);  // id differs

  CHECK(server.Request(http::verb::post, "/patterns/ab/disable").status == 200);
  CHECK(Has(server.Request(http::verb::get, "/patterns/ab").body, "\"enabled\":false"));
  CHECK(server.Request(http::verb::post, "/patterns/ab/enable").status == 200);
  CHECK(server.Request(http::verb::post, "/patterns/nope/enable").status == 404);

  CHECK(server.Request(http::verb::delete_, "/patterns/cd").status == 204);
  CHECK(server.Request(http::verb::delete_, "/patterns/cd").status == 404);
  CHECK(server.Request(http::verb::get, "/patterns/cd").status == 404);
}

TEST_CASE("Serve: bad requests get the right status and a JSON error") {
  TempDir dir;
  ServerProcess server(dir.path(), {"--max-pattern-bytes", "2048"});
  REQUIRE(server.started());
  auto invalid = server.Request(http::verb::post, "/patterns",
                                "id: p\nsequence:\n  - begin: a\n    where: x >\n", kYaml);
  CHECK(invalid.status == 422);
  CHECK(Has(invalid.body, "\"errors\":[{\"line\":4,\"column\":15,\"message\":\"unexpected end of expression\"}]"));
  auto validated = server.Request(http::verb::post, "/validate", "{\"id\":\"j\",\"sequence\":[{\"begin\":\"a\"}]}",
                                  "application/json");
  CHECK(validated.status == 200);
  CHECK(validated.body == "{\"valid\":true}");
  CHECK(server.Request(http::verb::post, "/validate", "x: [", kYaml).status == 422);
  auto media = server.Request(http::verb::post, "/patterns", kAb, "text/plain");
  CHECK(media.status == 415);
  CHECK(Has(media.body, "{\"error\":{\"code\":\"unsupported_media_type\""));
  CHECK(server.Request(http::verb::post, "/patterns", kAb + "# " + std::string(3000, 'x') + "\n", kYaml)
            .status == 413);
  CHECK(server.Request(http::verb::post, "/events", "{}", "text/csv").status == 415);
  CHECK(server.Request(http::verb::get, "/nowhere").status == 404);
  CHECK(server.Request(http::verb::delete_, "/events").status == 405);
  CHECK(server.Request(http::verb::get, "/alerts?limit=zero").status == 400);
  // A request that is not HTTP gets a 400 and the server keeps serving.
  CHECK(Has(server.Raw("NOT HTTP AT ALL\r\n\r\n"), "400"));
  CHECK(server.Request(http::verb::get, "/healthz").status == 200);
}

TEST_CASE("Serve: limits on bodies and connections answer clearly and the server goes on") {
  TempDir dir;
  ServerProcess server(dir.path(), {"--max-body-bytes", "4096", "--max-pattern-bytes", "2048", "--max-connections", "2"});
  REQUIRE(server.started());
  auto big = server.Request(http::verb::post, "/events", std::string(5000, ' '), kNdjson);
  CHECK(big.status == 413);
  CHECK(Has(big.body, "request body too large"));
  CHECK(Has(server.Raw("GET /healthz HTTP/1.1\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n"),
            "431"));
  {
    // Two streams hold both connections: a third connection is refused with 503.
    ServerProcess::Stream one(server.port(), "/alerts/stream");
    ServerProcess::Stream two(server.port(), "/alerts/stream");
    CHECK(server.Request(http::verb::get, "/healthz").status == 503);
  }
  bool recovered = false;
  for (int i = 0; i < 50 && !recovered; ++i) {  // the closed streams are noticed shortly
    recovered = server.Request(http::verb::get, "/healthz").status == 200;
    if (!recovered) ::usleep(20 * 1000);
  }
  CHECK(recovered);
}

TEST_CASE("Serve: events in, alerts out, bad events reported by index") {
  TempDir dir;
  ServerProcess server(dir.path());
  REQUIRE(server.started());
  REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
  auto posted = server.Request(http::verb::post, "/events",
                               Event(1, "x", "a") + "not json\n" + Event(2, "y", "a") + Event(3, "x", "b"),
                               kNdjson);
  CHECK(posted.status == 202);
  CHECK(Has(posted.body, "\"accepted\":3"));
  CHECK(Has(posted.body, "{\"index\":1,\"reason\":\"event is not a JSON object\"}"));
  // Matching is asynchronous; GET /alerts waits for the alerts of the events posted before it.
  CHECK(Has(server.Request(http::verb::get, "/alerts").body, "\"key\":\"x\""));
  // A JSON array, with a late event (time 1 is below the watermark 3).
  auto array = server.Request(http::verb::post, "/events",
                              "[" + Event(1, "y", "b") + "," + Event(4, "y", "b") + ", 7]",
                              "application/json");
  CHECK(array.status == 202);
  CHECK(Has(array.body, "\"accepted\":1"));
  CHECK(Has(array.body, "{\"index\":0,\"reason\":\"late event: time 1 is below the watermark 3\"}"));
  CHECK(Has(array.body, "{\"index\":2,\"reason\":\"element is not a JSON object\"}"));
  auto broken = server.Request(http::verb::post, "/events", "[{\"ts\":9,", "application/json");
  CHECK(broken.status == 400);
  CHECK(Has(broken.body, "malformed JSON array"));

  auto alerts = server.Request(http::verb::get, "/alerts?limit=10");
  CHECK(alerts.status == 200);
  // Newest first: y's match (completed by the array) before x's.
  const size_t y = alerts.body.find("\"key\":\"y\"");
  const size_t x = alerts.body.find("\"key\":\"x\"");
  REQUIRE(y != std::string::npos);
  REQUIRE(x != std::string::npos);
  CHECK(y < x);
  CHECK(Has(alerts.body, "\"match\":{\"a\":[{\"ts\":1,\"k\":\"x\",\"v\":\"a\"}],\"b\":[{\"ts\":3,\"k\":\"x\",\"v\":\"b\"}]},"
                         "\"version\":1,\"first_event_time\":1,\"last_event_time\":3,\"detected_at\":"));
  auto metrics = server.Request(http::verb::get, "/metrics");
  CHECK(Has(metrics.body, "vigil_nfa_matches_total{pattern=\"ab\"} 2"));
  CHECK(Has(metrics.body, "vigil_nfa_late_events_total 1"));
  CHECK(Has(metrics.body, "vigil_server_requests_total{route=\"/events\",code=\"202\"} 2"));
  CHECK(Has(metrics.body, "vigil_server_ingest_to_alert_seconds_count 2"));
  CHECK(Has(metrics.body, "vigil_server_ingest_to_alert_seconds_bucket{le=\"+Inf\"} 2"));
  // Per worker: the events delivered add up to the events matched (4, one key field).
  CHECK(Has(metrics.body, "vigil_worker_events_total{worker=\"0\"} "));
  CHECK(Has(metrics.body, "vigil_worker_busy_seconds_total{worker=\"0\"} "));
  CHECK(Has(metrics.body, "vigil_worker_skew "));
  uint64_t delivered = 0;
  for (size_t at = metrics.body.find("\nvigil_worker_events_total{"); at != std::string::npos;
       at = metrics.body.find("\nvigil_worker_events_total{", at + 1)) {
    delivered += std::stoull(metrics.body.substr(metrics.body.find("} ", at) + 2));
  }
  CHECK(delivered == 4);
  // The alerts file holds the same alerts.
  std::string file;
  std::FILE* f = std::fopen((dir.path() + "/alerts.ndjson").c_str(), "r");
  REQUIRE(f);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) file.append(buf, n);
  std::fclose(f);
  CAPTURE(file);
  CHECK(std::count(file.begin(), file.end(), '\n') == 2);
}

TEST_CASE("Serve: alerts stream live to Server-Sent Events subscribers") {
  TempDir dir;
  ServerProcess server(dir.path());
  REQUIRE(server.started());
  REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
  ServerProcess::Stream first(server.port(), "/alerts/stream");
  ServerProcess::Stream second(server.port(), "/alerts/stream");
  CHECK(first.status() == 200);
  CHECK(first.content_type() == "text/event-stream");
  server.Request(http::verb::post, "/events", Event(1, "x", "a") + Event(2, "x", "b"), kNdjson);
  for (ServerProcess::Stream* s : {&first, &second}) {
    const std::string got = s->ReadUntil("}\n\n");
    CHECK(Has(got, "event: alert\ndata: {\"id\":\""));
    CHECK(Has(got, "\"pattern\":\"ab\",\"key\":\"x\""));
  }
  // A subscriber that goes away does not disturb the others or the server.
  { ServerProcess::Stream gone(server.port(), "/alerts/stream"); }
  server.Request(http::verb::post, "/events", Event(3, "y", "a") + Event(4, "y", "b"), kNdjson);
  CHECK(Has(first.ReadUntil("\"key\":\"y\""), "\"key\":\"y\""));
  CHECK(server.Request(http::verb::get, "/healthz").status == 200);
}

TEST_CASE("Serve: the alerts file is rotated by size") {
  TempDir dir;
  ServerProcess server(dir.path(), {"--alerts-max-file-bytes", "1024", "--alerts-keep-files", "2"});
  REQUIRE(server.started());
  REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
  for (int i = 0; i < 30; ++i) {  // each alert is ~200 bytes: several rotations
    const std::string key = "k" + std::to_string(i);
    server.Request(http::verb::post, "/events", Event(2 * i, key, "a") + Event(2 * i + 1, key, "b"),
                   kNdjson);
  }
  const std::string base = dir.path() + "/alerts.ndjson";
  CHECK(fs::exists(base + ".1"));
  CHECK(fs::exists(base + ".2"));
  CHECK_FALSE(fs::exists(base + ".3"));
  CHECK(fs::file_size(base + ".1") >= 1024);
  CHECK(fs::file_size(base) < 1024 + 512);
}

TEST_CASE("Serve: replacing one pattern keeps another pattern's partial matches") {
  TempDir dir;
  ServerProcess server(dir.path());
  REQUIRE(server.started());
  REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
  REQUIRE(server.Request(http::verb::post, "/patterns", kCd, kYaml).status == 201);
  server.Request(http::verb::post, "/events", Event(1, "x", "a") + Event(2, "x", "c"), kNdjson);
  // Replace cd while ab and cd each hold a partial match for x: only cd's is dropped.
  auto replaced = server.Request(http::verb::put, "/patterns/cd", kCd, kYaml);
  CHECK(Has(replaced.body, "\"dropped_partial_matches\":1"));
  server.Request(http::verb::post, "/events", Event(3, "x", "b") + Event(4, "x", "d"), kNdjson);
  auto alerts = server.Request(http::verb::get, "/alerts").body;
  CHECK(Has(alerts, "\"pattern\":\"ab\""));
  CHECK_FALSE(Has(alerts, "\"pattern\":\"cd\""));
}

TEST_CASE("Serve: patterns survive a restart, and SIGTERM exits cleanly") {
  TempDir dir;
  {
    ServerProcess server(dir.path(), {"--patterns-dir", std::string(VIGIL_SOURCE_DIR) + "/patterns"});
    REQUIRE(server.started());
    CHECK(Has(server.Request(http::verb::get, "/readyz").body, "\"patterns\":5"));
    REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
    REQUIRE(server.Request(http::verb::post, "/patterns/velocity/disable").status == 200);
    CHECK(server.Stop() == 0);
  }
  ServerProcess again(dir.path());
  REQUIRE(again.started());
  auto list = again.Request(http::verb::get, "/patterns").body;
  CHECK(Has(list, "\"id\":\"ab\",\"version\":1"));
  CHECK(Has(list, "\"id\":\"card-testing\""));
  CHECK(Has(list, "\"id\":\"velocity\",\"version\":1,\"description\""));
  CHECK(Has(again.Request(http::verb::get, "/patterns/velocity").body, "\"enabled\":false"));
  CHECK(again.Stop() == 0);
}

TEST_CASE("Serve: with a token, every endpoint but health and metrics needs it") {
  TempDir dir;
  ServerProcess server(dir.path(), {"--api-token", "s3cret"});
  REQUIRE(server.started());
  auto missing = server.Request(http::verb::get, "/patterns");
  CHECK(missing.status == 401);
  CHECK(Has(missing.body, "\"code\":\"unauthorized\""));
  CHECK(server.Request(http::verb::get, "/patterns", "", "", "Bearer wrong").status == 401);
  CHECK(server.Request(http::verb::get, "/patterns", "", "", "Basic s3cret").status == 401);
  CHECK(server.Request(http::verb::get, "/patterns", "", "", "Bearer s3cret").status == 200);
  CHECK(server.Request(http::verb::post, "/patterns", kAb, kYaml, "Bearer s3cret").status == 201);
  CHECK(server.Request(http::verb::get, "/healthz").status == 200);
  CHECK(server.Request(http::verb::get, "/readyz").status == 200);
  auto metrics = server.Request(http::verb::get, "/metrics");
  CHECK(metrics.status == 200);
  CHECK_FALSE(Has(metrics.body, "s3cret"));
}

TEST_CASE("Serve: on a quiet stream the watermark follows the wall clock and windows close") {
  TempDir dir;
  ServerProcess server(dir.path(), {"--idle-timeout", "200ms"});
  REQUIRE(server.started());
  const std::string quiet =
      "id: quiet\nkey: k\nwithin: 1s\nsequence:\n  - begin: a\n    where: v == 'a'\n"
      "  - not_followed_by: b\n    where: v == 'b'\n";
  REQUIRE(server.Request(http::verb::post, "/patterns", quiet, kYaml).status == 201);
  REQUIRE(server.Request(http::verb::post, "/events", Event(1000, "x", "a"), kNdjson).status == 202);
  CHECK(!Has(server.Request(http::verb::get, "/alerts").body, "\"pattern\":\"quiet\""));
  // No more events: after the idle timeout the watermark moves with the wall clock, passes
  // the window (1 s after the event) and the trailing not_followed_by completes.
  std::string alerts;
  for (int i = 0; i < 40 && !Has(alerts, "\"pattern\":\"quiet\""); ++i) {
    ::usleep(100 * 1000);
    alerts = server.Request(http::verb::get, "/alerts").body;
  }
  CHECK(Has(alerts, "\"pattern\":\"quiet\",\"key\":\"x\""));
  // The watermark has moved on: an event from before it is late and kept with its reason.
  auto late = server.Request(http::verb::post, "/events", Event(1500, "x", "b"), kNdjson);
  CHECK(Has(late.body, "\"accepted\":0"));
  std::FILE* f = std::fopen((dir.path() + "/late-events.ndjson").c_str(), "r");
  REQUIRE(f);
  char line[512] = {};
  CHECK(std::fgets(line, sizeof line, f) != nullptr);
  std::fclose(f);
  CHECK(Has(line, "{\"reason\":\"late event: time 1500 is below the watermark"));
  CHECK(Has(line, "\"event\":{\"ts\":1500,\"k\":\"x\",\"v\":\"b\"}}"));
}

TEST_CASE("Serve: /openapi.json describes exactly the routes the server answers") {
  TempDir dir;
  ServerProcess server(dir.path());
  REQUIRE(server.started());
  REQUIRE(server.Request(http::verb::post, "/patterns", kAb, kYaml).status == 201);
  auto doc = server.Request(http::verb::get, "/openapi.json");
  REQUIRE(doc.status == 200);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(doc.body).get(root) == simdjson::SUCCESS);
  std::string_view version;
  CHECK(root["openapi"].get(version) == simdjson::SUCCESS);
  CHECK(version.substr(0, 2) == "3.");
  simdjson::dom::object paths;
  REQUIRE(root["paths"].get(paths) == simdjson::SUCCESS);
  int operations = 0;
  for (auto [path, methods] : paths) {
    for (auto [method, operation] : methods.get_object()) {
      std::string target(path);
      const size_t id = target.find("{id}");
      if (id != std::string::npos) target.replace(id, 4, "ab");
      const auto verb = http::string_to_verb(std::string(method) == "delete" ? "DELETE"
                                             : std::string(method) == "get"  ? "GET"
                                             : std::string(method) == "put"  ? "PUT"
                                                                              : "POST");
      CAPTURE(target);
      CAPTURE(method);
      ++operations;
      if (target == "/alerts/stream") {  // never ends: check only that it opens
        CHECK(ServerProcess::Stream(server.port(), target).status() == 200);
        continue;
      }
      // Every documented operation is routed: no 405, and no "no route" 404.
      auto answer = server.Request(verb, target, "", "application/json");
      CHECK(answer.status != 405);
      CHECK(!Has(answer.body, "no route"));
    }
  }
  CHECK(operations == 17);
  // And what is not documented is not routed.
  CHECK(Has(server.Request(http::verb::get, "/patterns/ab/frobnicate").body, "no route"));
  CHECK(server.Request(http::verb::patch, "/patterns/ab").status == 405);
}

TEST_SUITE_END();
