#pragma once
// `vigil replay`: runs patterns over a bounded NDJSON stream and writes matches as NDJSON
// (contract: "vigil replay").

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace vigil::app {

struct ReplayOptions {
  std::vector<std::string> pattern_paths;
  std::string events_path;  // "-" for standard input
  std::string time_field = "ts";
  int64_t max_out_of_orderness_ms = 0;
  // Partial matches kept per key and pattern; the oldest beyond it are dropped and reported.
  size_t max_partial_matches_per_key = 10000;
  // Matching threads, each owning a shard of the keys (see engine/sharded_matcher.h).
  size_t workers = 1;
  // Writes the matches sorted bytewise at the end, so the output is the same for every
  // worker count.
  bool sort = false;
};


// Returns the process exit status: 0 on success (also when some event lines were bad: each
// is reported on `err` with its line number and skipped), 2 when a pattern or the input
// cannot be used.
int RunReplay(const ReplayOptions& options, std::FILE* out, std::FILE* err);

}  // namespace vigil::app
