#pragma once
// LineReader: NDJSON lines from a file descriptor, read in blocks, each line handed out in
// place (no copy). The default block fits in a core's L2 cache, so the lines are still there
// when the engine copies them into its chunks (4 MiB blocks made replay 4-6% slower).

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vigil::app {

class LineReader {
 public:
  explicit LineReader(int fd, size_t block_size = size_t{1} << 18);

  // The next line without its line break (and without a trailing '\r'), valid until the next
  // call. Returns false at the end of input, or on a read error (then status() says why).
  bool Next(std::string_view* line);

  uint64_t line_number() const { return line_number_; }
  const Status& status() const { return status_; }

 private:
  bool Fill();

  int fd_;
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t line_number_ = 0;
  Status status_;
};

}  // namespace vigil::app
