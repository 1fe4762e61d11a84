// The vigil command line: `vigil replay`, `vigil validate`, `vigil --help`.

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/config_loader.h"
#include "app/pattern_loader.h"
#include "app/replay.h"
#include "engine/sharded_matcher.h"
#include "common/time_util.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] =
    "vigil: complex event processing over event-time streams\n"
    "\n"
    "usage: vigil COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  serve      run the service: REST API for patterns, HTTP event ingest, alerts\n"
    "  replay     run patterns over an NDJSON file and print the matches\n"
    "  validate   check pattern files and report every error\n"
    "\n"
    "Run 'vigil COMMAND --help' for a command's options.\n";

constexpr char kReplayUsage[] =
    "usage: vigil replay --patterns PATH [PATH ...] --events FILE|-\n"
    "                    [--time-field NAME] [--max-out-of-orderness DURATION]\n"
    "                    [--max-partial-matches N]\n"
    "\n"
    "Runs the patterns over the events as one bounded stream and writes each match to\n"
    "standard output as one JSON object per line. At the end of input every window closes.\n"
    "\n"
    "  --patterns PATH ...           pattern files (YAML or JSON) or directories of them\n"
    "  --events FILE|-               NDJSON events; '-' reads standard input\n"
    "  --time-field NAME             event time field: epoch milliseconds or RFC 3339\n"
    "                                (default: ts)\n"
    "  --max-out-of-orderness DUR    how late an event may arrive and still be matched,\n"
    "                                e.g. 500ms, 5s, 2m (default: 0)\n"
    "  --max-partial-matches N       partial matches kept per key and pattern; the oldest\n"
    "                                beyond it are dropped and reported (default: 10000)\n"
    "  --workers N                   match on N threads, each owning a shard of the keys\n"
    "                                (default: 1); the matches are the same for every N,\n"
    "                                their order is not\n"
    "  --sort                        write the matches sorted bytewise: one order for every N\n"
    "\n"
    "Exit status: 0 on success, also when some event lines were bad (each is reported on\n"
    "standard error with its line number); 2 when a pattern or an argument is invalid.\n";

constexpr char kValidateUsage[] =
    "usage: vigil validate PATH [PATH ...]\n"
    "\n"
    "Compiles every pattern in the given files or directories. Prints each error as\n"
    "file:line:column: message. Exit status: 0 when every pattern compiles, 2 otherwise.\n";

bool ParsePositive(const std::string& text, size_t* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size() && *out > 0;
}

bool IsHelp(std::string_view arg) { return arg == "--help" || arg == "-h"; }

int UsageError(const char* usage, const std::string& message) {
  std::fprintf(stderr, "vigil: %s\n\n%s", message.c_str(), usage);
  return 2;
}

int Replay(int argc, char** argv) {
  vigil::app::ReplayOptions options;
  bool have_events = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (IsHelp(arg)) {
      std::fputs(kReplayUsage, stdout);
      return 0;
    } else if (arg == "--patterns") {
      while (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
        options.pattern_paths.emplace_back(argv[++i]);
      }
    } else if (arg == "--events") {
      if (!value(&options.events_path)) return UsageError(kReplayUsage, "--events needs a file");
      have_events = true;
    } else if (arg == "--time-field") {
      if (!value(&options.time_field) || options.time_field.empty()) {
        return UsageError(kReplayUsage, "--time-field needs a field name");
      }
    } else if (arg == "--max-out-of-orderness") {
      std::string text;
      if (!value(&text)) return UsageError(kReplayUsage, "--max-out-of-orderness needs a duration");
      auto ms = vigil::ParseDurationMs(text);
      if (!ms) {
        return UsageError(kReplayUsage, "bad duration '" + text +
                                            "' for --max-out-of-orderness (e.g. 500ms, 5s, 2m)");
      }
      options.max_out_of_orderness_ms = *ms;
    } else if (arg == "--max-partial-matches") {
      std::string text;
      size_t limit = 0;
      if (!value(&text) || !ParsePositive(text, &limit)) {
        return UsageError(kReplayUsage, "--max-partial-matches needs a positive integer");
      }
      options.max_partial_matches_per_key = limit;
    } else if (arg == "--workers") {
      std::string text;
      if (!value(&text) || !ParsePositive(text, &options.workers) ||
          options.workers > vigil::engine::kMaxWorkers) {
        return UsageError(kReplayUsage, "--workers needs an integer from 1 to " +
                                                std::to_string(vigil::engine::kMaxWorkers));
      }
    } else if (arg == "--sort") {
      options.sort = true;
    } else {
      return UsageError(kReplayUsage, "unknown argument '" + std::string(arg) + "'");
    }
  }
  if (options.pattern_paths.empty()) return UsageError(kReplayUsage, "--patterns is required");
  if (!have_events) return UsageError(kReplayUsage, "--events is required");
  return vigil::app::RunReplay(options, stdout, stderr);
}

int Validate(int argc, char** argv) {
  std::vector<std::string> paths;
  for (int i = 0; i < argc; ++i) {
    if (IsHelp(argv[i])) {
      std::fputs(kValidateUsage, stdout);
      return 0;
    }
    paths.emplace_back(argv[i]);
  }
  if (paths.empty()) return UsageError(kValidateUsage, "no pattern files given");
  vigil::nfa::FieldSchema schema;
  vigil::app::LoadedPatterns loaded = vigil::app::LoadPatternFiles(paths, &schema);
  for (const std::string& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
  if (!loaded.errors.empty()) return 2;
  std::printf("%zu pattern%s valid\n", loaded.nfas.size(), loaded.nfas.size() == 1 ? "" : "s");
  return 0;
}

constexpr std::chrono::seconds kClientCloseDeadline{15};

// Ends the process with status 0 `after` from now, unless it has ended by then.
void ExitIfStillRunningAfter(std::chrono::seconds after) {
  std::thread([after] {
    std::this_thread::sleep_for(after);
    std::fprintf(stderr, "vigil: closing down took over %llds after the last write (the Kafka clients?); exiting\n",
                 static_cast<long long>(after.count()));
    std::fflush(nullptr);
    std::_Exit(0);
  }).detach();
}

int Serve(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  if (vigil::app::HasHelpFlag(args)) {
    std::fputs(vigil::app::ServeUsage().c_str(), stdout);
    return 0;
  }
  auto options = vigil::app::LoadServerOptions("", vigil::app::SnapshotVigilEnvironment(), args);
  if (!options.ok()) {
    std::fprintf(stderr, "vigil serve: %s\n", options.status().message().c_str());
    return 2;
  }
  vigil::server::Server server(*options);
  std::vector<std::string> warnings;
  vigil::Status started = server.Start(&warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "vigil serve: %s\n", w.c_str());
  if (!started.ok()) {
    std::fprintf(stderr, "vigil serve: %s\n", started.message().c_str());
    return 2;
  }
  // The first line on standard output says where the API is (tests read the port from it).
  std::printf("vigil: listening on %s://%s:%u\n", options->tls_cert_file.empty() ? "http" : "https",
              options->listen_address.c_str(),
              static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  server.Run();
  // Nothing is left to write; what remains is closing the Kafka clients, which librdkafka 2.0
  // can wait on forever (seen after the broker lost the topics a client was reading), and a
  // SIGTERM must end the process all the same.
  ExitIfStillRunningAfter(kClientCloseDeadline);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string_view command = argv[1];
  if (IsHelp(command) || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "serve") return Serve(argc - 2, argv + 2);
  if (command == "replay") return Replay(argc - 2, argv + 2);
  if (command == "validate") return Validate(argc - 2, argv + 2);
  return UsageError(kUsage, "unknown command '" + std::string(command) + "'");
}
