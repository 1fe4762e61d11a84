#include "app/replay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "app/line_reader.h"
#include "app/pattern_loader.h"
#include "common/json_text.h"
#include "nfa/event_batch.h"
#include "nfa/event_parser.h"
#include "nfa/match_json.h"
#include "nfa/matcher.h"

namespace vigil::app {
namespace {

// Writes match lines to a FILE in large blocks, and reports problems with event lines.
class NdjsonMatchWriter : public nfa::MatchSink {
 public:
  NdjsonMatchWriter(std::FILE* out, std::FILE* err, std::string events_name)
      : out_(out), err_(err), events_name_(std::move(events_name)) {}
  ~NdjsonMatchWriter() override { Flush(); }

  void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override {
    buffer_.push_back('{');
    nfa::AppendMatchFields(&buffer_, nfa, key_json, match);
    buffer_.append("}\n");
    if (buffer_.size() > (size_t{1} << 20)) Flush();
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

  void Flush() {
    if (!buffer_.empty()) std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
    buffer_.clear();
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  std::FILE* err_;
  std::string events_name_;
  std::string buffer_;
};

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

  nfa::EventParser parser(&schema, options.time_field);
  NdjsonMatchWriter writer(out, err, events_name);
  nfa::MatcherOptions matcher_options;
  matcher_options.max_out_of_orderness_ms = options.max_out_of_orderness_ms;
  matcher_options.max_partial_matches_per_key = options.max_partial_matches_per_key;
  nfa::Matcher matcher(std::move(loaded.nfas), matcher_options, &writer);

  LineReader reader(fd);
  nfa::EventBatch batch;
  std::string_view line;
  size_t readable = 0;
  while (true) {
    // No refill while the batch holds lines: they point into the reader's buffer.
    while (!batch.full() && reader.Next(&line, &readable, /*may_refill=*/batch.empty())) {
      const std::string_view text = TrimJsonWhitespace(line);
      if (text.empty()) continue;
      nfa::Event* event = batch.next();
      Status parsed = parser.Parse(text, readable - (text.data() - line.data()), event);
      if (!parsed.ok()) {
        std::fprintf(err, "%s:%llu: %s\n", events_name.c_str(),
                     static_cast<unsigned long long>(reader.line_number()), parsed.message().c_str());
        continue;
      }
      event->set_line(reader.line_number());
      batch.Keep();
    }
    if (batch.empty()) break;  // Next() refused with may_refill set: the input has ended
    batch.MatchAll(&matcher);
  }
  matcher.Finish();
  writer.Flush();
  if (const uint64_t dropped = matcher.stats().dropped_partial_matches; dropped > 0) {
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
