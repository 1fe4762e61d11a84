#pragma once
// LineReader: NDJSON lines from a file descriptor, read in large blocks, each line handed out
// in place (no copy) with the simdjson padding readable after it.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vigil::app {

class LineReader {
 public:
  explicit LineReader(int fd, size_t block_size = size_t{1} << 22);

  // The next line without its line break (and without a trailing '\r'). Returns false at the
  // end of input, or on a read error (then status() says why). `*readable` is how many bytes
  // may be read from line.data(): at least line.size() + 64. A line stays valid until a call
  // with `may_refill` true; with it false, Next returns false instead of reading more input,
  // so the lines already handed out stay valid (for processing them as a batch).
  bool Next(std::string_view* line, size_t* readable, bool may_refill = true);

  uint64_t line_number() const { return line_number_; }
  const Status& status() const { return status_; }

 private:
  bool Fill();

  static constexpr size_t kPadding = 64;
  int fd_;
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t line_number_ = 0;
  Status status_;
};

}  // namespace vigil::app
