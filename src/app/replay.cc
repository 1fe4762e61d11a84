#include "app/replay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "app/line_reader.h"
#include "app/pattern_loader.h"
#include "common/json_text.h"
#include "engine/sharded_matcher.h"
#include "nfa/match_json.h"

namespace vigil::app {
namespace {

// Reports problems with event lines, on the reading thread.
class ProblemReporter : public engine::InputSink {
 public:
  ProblemReporter(std::FILE* err, std::string events_name)
      : err_(err), events_name_(std::move(events_name)) {}

  void OnMalformed(uint64_t line, std::string_view, std::string_view reason) override {
    std::fprintf(err_, "%s:%llu: %.*s\n", events_name_.c_str(), static_cast<unsigned long long>(line),
                 static_cast<int>(reason.size()), reason.data());
  }

  void OnLate(const nfa::Event& event, int64_t watermark_ms) override {
    std::fprintf(err_, "%s:%llu: late event: time %lld is below the watermark %lld\n",
                 events_name_.c_str(), static_cast<unsigned long long>(event.line()),
                 static_cast<long long>(event.time_ms()), static_cast<long long>(watermark_ms));
  }

  void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) override {
    std::fprintf(err_, "%s:%llu: pattern %s: %.*s\n", events_name_.c_str(),
                 static_cast<unsigned long long>(event.line()), nfa.pattern().id.c_str(),
                 static_cast<int>(reason.size()), reason.data());
  }

 private:
  std::FILE* err_;
  std::string events_name_;
};

// One worker's match lines, written to a shared FILE in large blocks of whole lines (stdio
// locks the FILE per write), or all kept for sorting.
class MatchWriter : public engine::WorkerSink {
 public:
  MatchWriter(std::FILE* out, bool keep_all) : out_(out), keep_all_(keep_all) {}

  void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override {
    buffer_.push_back('{');
    nfa::AppendMatchFields(&buffer_, nfa, key_json, match);
    buffer_.append("}\n");
    if (!keep_all_ && buffer_.size() > (size_t{1} << 20)) Flush();
  }

  void Flush() {
    if (!buffer_.empty()) std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
    buffer_.clear();
    std::fflush(out_);
  }

  // The lines kept (keep_all).
  const std::string& lines() const { return buffer_; }

 private:
  std::FILE* out_;
  bool keep_all_;
  std::string buffer_;
};

// Writes the lines of all `writers` in bytewise order.
void WriteSorted(const std::vector<std::unique_ptr<MatchWriter>>& writers, std::FILE* out) {
  std::vector<std::string_view> lines;
  for (const auto& writer : writers) {
    std::string_view text = writer->lines();
    while (!text.empty()) {
      const size_t end = text.find('\n') + 1;
      lines.push_back(text.substr(0, end));
      text.remove_prefix(end);
    }
  }
  std::sort(lines.begin(), lines.end());
  for (std::string_view line : lines) std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

}  // namespace

int RunReplay(const ReplayOptions& options, std::FILE* out, std::FILE* err) {
  nfa::FieldSchema schema;
  LoadedPatterns loaded = LoadPatternFiles(options.pattern_paths, &schema);
  for (const std::string& e : loaded.errors) std::fprintf(err, "%s\n", e.c_str());
  if (!loaded.errors.empty()) return 2;

  int fd = STDIN_FILENO;
  const bool from_stdin = options.events_path == "-";
  if (!from_stdin) {
    fd = ::open(options.events_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(err, "%s: cannot open: %s\n", options.events_path.c_str(), std::strerror(errno));
      return 2;
    }
  }
  const std::string events_name = from_stdin ? "<stdin>" : options.events_path;

  ProblemReporter problems(err, events_name);
  std::vector<std::unique_ptr<MatchWriter>> writers;
  std::vector<engine::WorkerSink*> sinks;
  for (size_t i = 0; i < options.workers; ++i) {
    writers.push_back(std::make_unique<MatchWriter>(out, options.sort));
    sinks.push_back(writers.back().get());
  }
  engine::EngineOptions engine_options;
  engine_options.workers = options.workers;
  engine_options.time_field = options.time_field;
  engine_options.matcher.max_out_of_orderness_ms = options.max_out_of_orderness_ms;
  engine_options.matcher.max_partial_matches_per_key = options.max_partial_matches_per_key;
  engine::ShardedMatcher matcher(std::move(loaded.nfas), &schema, engine_options, &problems, sinks);

  LineReader reader(fd);
  std::string_view line;
  while (reader.Next(&line)) {
    const std::string_view text = TrimJsonWhitespace(line);
    if (!text.empty()) matcher.Add(text, reader.line_number());
  }
  matcher.Finish();
  if (options.sort) {
    WriteSorted(writers, out);
  } else {
    for (const auto& writer : writers) writer->Flush();
  }
  if (const uint64_t dropped = matcher.Observe().totals.dropped_partial_matches; dropped > 0) {
    std::fprintf(err,
                 "%s: %llu partial matches dropped: a key held more than %zu for one pattern "
                 "(--max-partial-matches)\n",
                 events_name.c_str(), static_cast<unsigned long long>(dropped),
                 options.max_partial_matches_per_key);
  }
  if (!from_stdin) ::close(fd);
  if (!reader.status().ok()) {
    std::fprintf(err, "%s: %s\n", events_name.c_str(), reader.status().message().c_str());
    return 2;
  }
  return 0;
}

}  // namespace vigil::app
