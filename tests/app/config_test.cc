// The `vigil serve` configuration: defaults, the YAML file, VIGIL_* variables and flags, their
// precedence, and the message of every rejected value. The environment is passed as a map, so
// no test reads or changes the process environment.
#include "app/config_loader.h"
#include "support/temp_dir.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

TEST_SUITE_BEGIN("app");

namespace {

namespace fs = std::filesystem;
using vigil::Status;
using vigil::app::LoadServerOptions;
using vigil::server::ServerOptions;
using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;

using vigil::testing::TempDir;

std::string ErrorOf(const vigil::Result<ServerOptions>& r) {
  REQUIRE_FALSE(r.ok());
  return r.status().message();
}

void CheckDefaults(const ServerOptions& o) {
  CHECK(o.listen_address == "127.0.0.1");
  CHECK(o.port == 8080);
  CHECK(o.max_body_bytes == 16777216);
  CHECK(o.max_connections_per_client == 64);
  CHECK(o.request_timeout_ms == 30000);
  CHECK(o.tls_cert_file.empty());
  CHECK(o.api_read_token.empty());
  CHECK(o.audit_log_file == "vigil-data/audit.ndjson");
  CHECK(o.max_pattern_bytes == 262144);
  CHECK(o.data_dir == "vigil-data");
  CHECK(o.patterns_dir == "");
  CHECK(o.alerts_file == "vigil-data/alerts.ndjson");
  CHECK(o.recent_alerts == 1000);
  CHECK(o.time_field == "ts");
  CHECK(o.max_out_of_orderness_ms == 0);
  CHECK(o.max_partial_matches_per_key == 10000);
}

// The message for one bad value given as a flag: "--flag VALUE".
std::string FlagError(const std::string& flag, const std::string& value) {
  return ErrorOf(LoadServerOptions("", {}, {flag, value}));
}

}  // namespace

TEST_CASE("Config: no file, environment or flags gives the defaults") {
  auto r = LoadServerOptions("", {}, {});
  REQUIRE(r.ok());
  CheckDefaults(*r);
}

TEST_CASE("Config: a full file sets every key") {
  TempDir dir;
  const std::string path = dir.Write("full.yaml",
                                     "server:\n"
                                     "  listen: 0.0.0.0:9090\n"
                                     "  max_body_bytes: 2048\n"
                                     "  max_pattern_bytes: 1024\n"
                                     "data_dir: /var/lib/vigil\n"
                                     "patterns_dir: rules\n"
                                     "alerts:\n"
                                     "  file: /var/log/vigil/alerts.ndjson\n"
                                     "  recent: 50\n"
                                     "events:\n"
                                     "  time_field: \"@timestamp\"\n"
                                     "  max_out_of_orderness: 2m\n"
                                     "  max_partial_matches_per_key: 7\n");
  auto r = LoadServerOptions(path, {}, {});
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->listen_address == "0.0.0.0");
  CHECK(r->port == 9090);
  CHECK(r->max_body_bytes == 2048);
  CHECK(r->max_pattern_bytes == 1024);
  CHECK(r->data_dir == "/var/lib/vigil");
  CHECK(r->patterns_dir == "rules");
  CHECK(r->alerts_file == "/var/log/vigil/alerts.ndjson");
  CHECK(r->recent_alerts == 50);
  CHECK(r->time_field == "@timestamp");
  CHECK(r->max_out_of_orderness_ms == 120000);
  CHECK(r->max_partial_matches_per_key == 7);
}

TEST_CASE("Config: every key from the environment and from flags") {
  SUBCASE("environment") {
    const Env env = {{"VIGIL_SERVER_LISTEN", "[::1]:0"},
                     {"VIGIL_SERVER_MAX_BODY_BYTES", "4096"},
                     {"VIGIL_SERVER_MAX_PATTERN_BYTES", "2048"},
                     {"VIGIL_DATA_DIR", "d"},
                     {"VIGIL_PATTERNS_DIR", "p"},
                     {"VIGIL_ALERTS_FILE", "a.ndjson"},
                     {"VIGIL_ALERTS_RECENT", "1000000"},
                     {"VIGIL_EVENTS_TIME_FIELD", "time"},
                     {"VIGIL_EVENTS_MAX_OUT_OF_ORDERNESS", "1500"},
                     {"VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_KEY", "1"}};
    auto r = LoadServerOptions("", env, {});
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK(r->listen_address == "::1");
    CHECK(r->port == 0);
    CHECK(r->max_body_bytes == 4096);
    CHECK(r->max_pattern_bytes == 2048);
    CHECK(r->data_dir == "d");
    CHECK(r->patterns_dir == "p");
    CHECK(r->alerts_file == "a.ndjson");
    CHECK(r->recent_alerts == 1000000);
    CHECK(r->time_field == "time");
    CHECK(r->max_out_of_orderness_ms == 1500);
    CHECK(r->max_partial_matches_per_key == 1);
  }
  SUBCASE("flags, in both forms") {
    const Args args = {"--listen", "localhost:65535",
                       "--max-body-bytes=1024",
                       "--max-pattern-bytes", "1024",
                       "--data-dir=d",
                       "--patterns-dir", "p",
                       "--alerts-file=a.ndjson",
                       "--recent-alerts", "1",
                       "--time-field=time",
                       "--max-out-of-orderness", "1d",
                       "--max-partial-matches=3"};
    auto r = LoadServerOptions("", {}, args);
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK(r->listen_address == "localhost");
    CHECK(r->port == 65535);
    CHECK(r->max_body_bytes == 1024);
    CHECK(r->max_pattern_bytes == 1024);
    CHECK(r->data_dir == "d");
    CHECK(r->patterns_dir == "p");
    CHECK(r->alerts_file == "a.ndjson");
    CHECK(r->recent_alerts == 1);
    CHECK(r->time_field == "time");
    CHECK(r->max_out_of_orderness_ms == 86400000);
    CHECK(r->max_partial_matches_per_key == 3);
  }
}

TEST_CASE("Config: a flag beats the environment, which beats the file, which beats the default") {
  TempDir dir;
  const std::string path = dir.Write("c.yaml",
                                     "alerts:\n"
                                     "  recent: 10\n"
                                     "events:\n"
                                     "  time_field: from_file\n"
                                     "  max_out_of_orderness: 1s\n");
  const Env env = {{"VIGIL_ALERTS_RECENT", "20"}, {"VIGIL_EVENTS_TIME_FIELD", "from_env"}};
  const Args args = {"--recent-alerts", "30"};
  auto r = LoadServerOptions(path, env, args);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->recent_alerts == 30);                // flag over environment and file
  CHECK(r->time_field == "from_env");           // environment over file
  CHECK(r->max_out_of_orderness_ms == 1000);    // file over default
  CHECK(r->max_partial_matches_per_key == 10000);  // default

  SUBCASE("the last of a repeated flag wins") {
    auto again = LoadServerOptions(path, env, {"--recent-alerts=30", "--recent-alerts", "40"});
    REQUIRE(again.ok());
    CHECK(again->recent_alerts == 40);
  }
}

TEST_CASE("Config: an empty alerts file becomes <data_dir>/alerts.ndjson after precedence") {
  TempDir dir;
  const std::string path = dir.Write("c.yaml", "data_dir: from_file\n");
  SUBCASE("data_dir from the file") {
    auto r = LoadServerOptions(path, {}, {});
    REQUIRE(r.ok());
    CHECK(r->alerts_file == "from_file/alerts.ndjson");
  }
  SUBCASE("data_dir from a flag overrides the file's") {
    auto r = LoadServerOptions(path, {}, {"--data-dir", "/srv/vigil/"});
    REQUIRE(r.ok());
    CHECK(r->alerts_file == "/srv/vigil/alerts.ndjson");
  }
  SUBCASE("an explicit alerts file is kept") {
    auto r = LoadServerOptions(path, {{"VIGIL_ALERTS_FILE", "x.ndjson"}}, {});
    REQUIRE(r.ok());
    CHECK(r->alerts_file == "x.ndjson");
  }
  SUBCASE("an empty flag value clears a file's alerts file") {
    const std::string with_file = dir.Write("d.yaml", "alerts:\n  file: x.ndjson\n");
    auto r = LoadServerOptions(with_file, {}, {"--alerts-file="});
    REQUIRE(r.ok());
    CHECK(r->alerts_file == "vigil-data/alerts.ndjson");
  }
}

TEST_CASE("Config: security settings that only make sense together") {
  auto refused = [](std::vector<std::string> flags) {
    auto r = LoadServerOptions("", {}, flags);
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  CHECK(refused({"--api-read-token", "r"}).find("api.read_token needs api.token") != std::string::npos);
  CHECK(refused({"--api-token", "same", "--api-read-token", "same"}).find("must differ") != std::string::npos);
  CHECK(refused({"--tls-cert", "c.pem"}).find("go together") != std::string::npos);
  CHECK(refused({"--api-token", "a", "--api-read-token", "r", "--tls-cert", "c.pem", "--tls-key", "k.pem"}) ==
        "accepted");
  auto r = LoadServerOptions("", {}, {"--data-dir", "/srv/v"});
  REQUIRE(r.ok());
  CHECK(r->audit_log_file == "/srv/v/audit.ndjson");
}

TEST_CASE("Config: the file comes from --config, then VIGIL_CONFIG, then the default path") {
  TempDir dir;
  const std::string a = dir.Write("a.yaml", "events:\n  time_field: a\n");
  const std::string b = dir.Write("b.yaml", "events:\n  time_field: b\n");
  const std::string c = dir.Write("c.yaml", "events:\n  time_field: c\n");
  auto time_field = [](const vigil::Result<ServerOptions>& r) {
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    return r->time_field;
  };
  CHECK(time_field(LoadServerOptions(a, {}, {})) == "a");
  CHECK(time_field(LoadServerOptions(a, {{"VIGIL_CONFIG", b}}, {})) == "b");
  CHECK(time_field(LoadServerOptions(a, {{"VIGIL_CONFIG", b}}, {"--config", c})) == "c");
  CHECK(time_field(LoadServerOptions(a, {}, {"--config=" + c})) == "c");
  // An empty --config or VIGIL_CONFIG means no file at all.
  CHECK(time_field(LoadServerOptions(a, {{"VIGIL_CONFIG", b}}, {"--config="})) == "ts");
  CHECK(time_field(LoadServerOptions(a, {{"VIGIL_CONFIG", ""}}, {})) == "ts");
}

TEST_CASE("Config: unknown environment variables are ignored") {
  const Env env = {{"VIGIL_LISTEN", "garbage"}, {"VIGIL_SERVER", "x"}, {"HOME", "/"}};
  auto r = LoadServerOptions("", env, {});
  REQUIRE(r.ok());
  CheckDefaults(*r);
}

TEST_CASE("Config: a missing, unreadable or malformed file is an error naming its path") {
  TempDir dir;
  SUBCASE("missing") {
    const std::string path = (fs::path(dir.path()) / "nope.yaml").string();
    auto r = LoadServerOptions(path, {}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kNotFound);
    CHECK(r.status().message() == path + ": cannot open config file: No such file or directory");
  }
  SUBCASE("a directory") {
    auto r = LoadServerOptions(dir.path(), {}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kIoError);
    CHECK(r.status().message() ==
          dir.path() + ": cannot read config file: Is a directory");
  }
  SUBCASE("YAML syntax error") {
    const std::string path = dir.Write("bad.yaml", "server:\n  listen: [1, 2\n");
    auto r = LoadServerOptions(path, {}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().starts_with(path + ":3:1: "));
  }
  SUBCASE("two documents") {
    const std::string path = dir.Write("two.yaml", "data_dir: a\n---\ndata_dir: b\n");
    CHECK(ErrorOf(LoadServerOptions(path, {}, {})) ==
          path + ":3:1: a config file holds one YAML document");
  }
  SUBCASE("not a mapping") {
    const std::string path = dir.Write("list.yaml", "- server\n");
    CHECK(ErrorOf(LoadServerOptions(path, {}, {})) ==
          path + ":1:1: the config must be a mapping of keys, such as 'server:'");
  }
  SUBCASE("an empty file or a file of comments is all defaults") {
    for (const char* text : {"", "# nothing yet\n", "server:\nalerts:\n"}) {
      auto r = LoadServerOptions(dir.Write("empty.yaml", text), {}, {});
      REQUIRE_MESSAGE(r.ok(), r.status().message());
      CheckDefaults(*r);
    }
  }
}

TEST_CASE("Config: unknown, duplicate and misshapen YAML keys are rejected with their position") {
  TempDir dir;
  auto error = [&](const std::string& text) {
    const std::string path = dir.Write("c.yaml", text);
    std::string message = ErrorOf(LoadServerOptions(path, {}, {}));
    REQUIRE(message.starts_with(path));
    return message.substr(path.size());
  };
  CHECK(error("server:\n  port: 80\n") ==
        ":2:3: server.port: unknown key (known keys under server: listen, max_connections, "
        "max_connections_per_client, request_timeout, tls, max_body_bytes, max_pattern_bytes)");
  CHECK(error("data_dir: x\nalert:\n  recent: 1\n") ==
        ":2:1: alert: unknown key (known keys: server, workers, data_dir, patterns_dir, alerts, events, state, checkpoint, input_log, processing, kafka, api)");
  CHECK(error("events:\n  time_field: a\n  time_field: b\n") ==
        ":3:3: events.time_field: duplicate key");
  CHECK(error("alerts: 5\n") == ":1:9: alerts: must be a mapping of keys");
  CHECK(error("events:\n  time_field: [a, b]\n") ==
        ":2:15: events.time_field: must be a single value, not a list");
  CHECK(error("server:\n  listen:\n    host: x\n") ==
        ":3:5: server.listen: must be a single value, not a mapping");
  CHECK(error("data_dir:\n") ==
        ":1:1: data_dir: needs a value (remove the key to use the default)");
  CHECK(error("data_dir: ~\n") ==
        ":1:1: data_dir: needs a value (remove the key to use the default)");
  CHECK(error("? [a]\n: b\n") == ":1:3: keys must be plain names");
}

TEST_CASE("Config: unknown flags and stray arguments are rejected") {
  CHECK(ErrorOf(LoadServerOptions("", {}, {"--port", "80"})) ==
        "--port: unknown flag (see 'vigil serve --help')");
  CHECK(ErrorOf(LoadServerOptions("", {}, {"--lisen=1.2.3.4:5"})) ==
        "--lisen: unknown flag (see 'vigil serve --help')");
  CHECK(ErrorOf(LoadServerOptions("", {}, {"-l", "x"})) ==
        "'-l': unexpected argument (settings are given as --flag VALUE)\n"
        "'x': unexpected argument (settings are given as --flag VALUE)");
  CHECK(ErrorOf(LoadServerOptions("", {}, {"--listen"})) == "--listen: needs a value");
  CHECK(ErrorOf(LoadServerOptions("", {}, {"--config", "--listen", "x:1"})) ==
        "--config: needs a value");
}

TEST_CASE("Config: every rejected value names its source and key") {
  SUBCASE("server.listen") {
    CHECK(FlagError("--listen", "127.0.0.1:65536") ==
          "--listen: port must be 0..65535 (got '127.0.0.1:65536')");
    CHECK(FlagError("--listen", "127.0.0.1:") ==
          "--listen: port must be 0..65535 (got '127.0.0.1:')");
    CHECK(FlagError("--listen", "127.0.0.1:http") ==
          "--listen: port must be 0..65535 (got '127.0.0.1:http')");
    CHECK(FlagError("--listen", "127.0.0.1") ==
          "--listen: must be HOST:PORT, e.g. 127.0.0.1:8080 (got '127.0.0.1')");
    CHECK(FlagError("--listen", ":8080") ==
          "--listen: host must not be empty (0.0.0.0 listens on every interface) (got ':8080')");
    CHECK(FlagError("--listen", "[]:8080") ==
          "--listen: host must not be empty (0.0.0.0 listens on every interface) (got '[]:8080')");
    CHECK(FlagError("--listen", "::1:8080") ==
          "--listen: an IPv6 host must be in brackets, e.g. [::1]:8080 (got '::1:8080')");
    CHECK(FlagError("--listen", "[::1]8080") ==
          "--listen: must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (got '[::1]8080')");
  }
  SUBCASE("server.max_body_bytes") {
    CHECK(FlagError("--max-body-bytes", "1023") ==
          "--max-body-bytes: must be at least 1024 (got '1023')");
    CHECK(FlagError("--max-body-bytes", "16MiB") ==
          "--max-body-bytes: must be a positive integer (got '16MiB')");
    CHECK(FlagError("--max-body-bytes", "-5") ==
          "--max-body-bytes: must be a positive integer (got '-5')");
    CHECK(FlagError("--max-body-bytes", "99999999999999999999") ==
          "--max-body-bytes: must be at most 18446744073709551615 (got '99999999999999999999')");
  }
  SUBCASE("server.max_pattern_bytes") {
    CHECK(FlagError("--max-pattern-bytes", "10") ==
          "--max-pattern-bytes: must be at least 1024 (got '10')");
    const Args args = {"--max-body-bytes", "2048", "--max-pattern-bytes", "4096"};
    CHECK(ErrorOf(LoadServerOptions("", {}, args)) ==
          "--max-pattern-bytes: must be at most server.max_body_bytes (2048, set by "
          "--max-body-bytes) (got '4096')");
    // The default pattern limit (256 KiB) is above this body limit: the body limit is blamed.
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_SERVER_MAX_BODY_BYTES", "2048"}}, {})) ==
          "VIGIL_SERVER_MAX_BODY_BYTES: must be at least server.max_pattern_bytes (262144, the "
          "default) (got '2048')");
  }
  SUBCASE("data_dir and patterns_dir") {
    CHECK(FlagError("--data-dir", "") == "--data-dir: must not be empty");
    auto r = LoadServerOptions("", {{"VIGIL_PATTERNS_DIR", ""}}, {});
    REQUIRE(r.ok());
    CHECK(r->patterns_dir == "");
  }
  SUBCASE("alerts.recent") {
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_ALERTS_RECENT", "many"}}, {})) ==
          "VIGIL_ALERTS_RECENT: must be a positive integer (got 'many')");
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_ALERTS_RECENT", "0"}}, {})) ==
          "VIGIL_ALERTS_RECENT: must be a positive integer (got '0')");
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_ALERTS_RECENT", "1000001"}}, {})) ==
          "VIGIL_ALERTS_RECENT: must be at most 1000000 (got '1000001')");
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_ALERTS_RECENT", " 10"}}, {})) ==
          "VIGIL_ALERTS_RECENT: must be a positive integer (got ' 10')");
  }
  SUBCASE("events.time_field") {
    CHECK(ErrorOf(LoadServerOptions("", {{"VIGIL_EVENTS_TIME_FIELD", ""}}, {})) ==
          "VIGIL_EVENTS_TIME_FIELD: must not be empty");
  }
  SUBCASE("events.max_out_of_orderness") {
    CHECK(FlagError("--max-out-of-orderness", "5 minutes") ==
          "--max-out-of-orderness: must be a duration such as 500ms, 5s, 2m, 1h, 1d or bare "
          "milliseconds (got '5 minutes')");
    CHECK(FlagError("--max-out-of-orderness", "-1s")
              .starts_with("--max-out-of-orderness: must be a duration"));
  }
  SUBCASE("events.max_partial_matches_per_key") {
    CHECK(FlagError("--max-partial-matches", "0") ==
          "--max-partial-matches: must be a positive integer (got '0')");
  }
  SUBCASE("long values are shortened in messages") {
    const std::string value(100, 'x');
    CHECK(FlagError("--recent-alerts", value) ==
          "--recent-alerts: must be a positive integer (got '" + std::string(64, 'x') + "...')");
  }
}

TEST_CASE("Config: file errors give file:line:column and the key path") {
  TempDir dir;
  const std::string path = dir.Write("config.yaml",
                                     "server:\n"
                                     "  listen: 127.0.0.1:99999\n"
                                     "  max_body_bytes: 2048\n"
                                     "alerts:\n"
                                     "  recent: 0\n"
                                     "events:\n"
                                     "  max_out_of_orderness: soon\n");
  // Every bad value is reported: the file's, the environment's, the flags', then those that
  // break a rule across settings (here the default pattern limit is above the body limit).
  CHECK(ErrorOf(LoadServerOptions(path, {{"VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_KEY", "x"}},
                                  {"--time-field="})) ==
        path + ":2:11: server.listen: port must be 0..65535 (got '127.0.0.1:99999')\n" + path +
            ":5:11: alerts.recent: must be a positive integer (got '0')\n" + path +
            ":7:25: events.max_out_of_orderness: must be a duration such as 500ms, 5s, 2m, 1h, "
            "1d or bare milliseconds (got 'soon')\n"
            "VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_KEY: must be a positive integer (got 'x')\n"
            "--time-field: must not be empty\n" +
            path + ":3:19: server.max_body_bytes: must be at least server.max_pattern_bytes "
                   "(262144, the default) (got '2048')");

  SUBCASE("a cross-setting error points at the file's key") {
    const std::string small = dir.Write("small.yaml",
                                        "server:\n"
                                        "  max_body_bytes: 4096\n"
                                        "  max_pattern_bytes: 8192\n");
    CHECK(ErrorOf(LoadServerOptions(small, {}, {})) ==
          small + ":3:22: server.max_pattern_bytes: must be at most server.max_body_bytes (4096, "
                  "set at " + small + ":2:19: server.max_body_bytes) (got '8192')");
    // A flag fixes it.
    auto r = LoadServerOptions(small, {}, {"--max-body-bytes=8192"});
    REQUIRE(r.ok());
    CHECK(r->max_body_bytes == 8192);
  }
}

TEST_CASE("Config: the example file in config/ loads and yields the defaults") {
  const std::string path = std::string(VIGIL_SOURCE_DIR) + "/config/vigil.example.yaml";
  auto r = LoadServerOptions(path, {}, {});
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CheckDefaults(*r);
}

TEST_CASE("Config: the example file and the usage text name every variable and flag") {
  std::ifstream in(std::string(VIGIL_SOURCE_DIR) + "/config/vigil.example.yaml");
  const std::string example((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string usage = vigil::app::ServeUsage();
  const std::vector<std::pair<std::string, std::string>> names = {
      {"VIGIL_SERVER_LISTEN", "--listen"},
      {"VIGIL_SERVER_MAX_BODY_BYTES", "--max-body-bytes"},
      {"VIGIL_SERVER_MAX_PATTERN_BYTES", "--max-pattern-bytes"},
      {"VIGIL_DATA_DIR", "--data-dir"},
      {"VIGIL_PATTERNS_DIR", "--patterns-dir"},
      {"VIGIL_ALERTS_FILE", "--alerts-file"},
      {"VIGIL_ALERTS_RECENT", "--recent-alerts"},
      {"VIGIL_EVENTS_TIME_FIELD", "--time-field"},
      {"VIGIL_EVENTS_MAX_OUT_OF_ORDERNESS", "--max-out-of-orderness"},
      {"VIGIL_EVENTS_MAX_PARTIAL_MATCHES_PER_KEY", "--max-partial-matches"},
      {"VIGIL_CONFIG", "--config"}};
  for (const auto& [env, flag] : names) {
    CAPTURE(env);
    CHECK(example.find(env) != std::string::npos);
    CHECK((example.find("flag " + flag) != std::string::npos));
    CHECK(usage.find(env) != std::string::npos);
    CHECK(usage.find("  " + flag + " ") != std::string::npos);
  }
}

TEST_CASE("Config: --help is recognised for the caller") {
  CHECK(vigil::app::HasHelpFlag({"--listen", "x:1", "--help"}));
  CHECK(vigil::app::HasHelpFlag({"-h"}));
  CHECK_FALSE(vigil::app::HasHelpFlag({"--listen", "x:1"}));
}

TEST_CASE("Config: the environment snapshot holds only VIGIL_ variables") {
  for (const auto& [name, value] : vigil::app::SnapshotVigilEnvironment()) {
    CHECK(name.starts_with("VIGIL_"));
  }
}

TEST_SUITE_END();
