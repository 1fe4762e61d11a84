// LineReader: lines across block boundaries, long lines, CRLF, a last line without a break,
// and batches that must not be overwritten.
#include "app/line_reader.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

TEST_SUITE_BEGIN("app");

namespace {

// A pipe whose read end holds `text`.
int FdWith(const std::string& text) {
  std::FILE* f = std::tmpfile();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fflush(f);
  const int fd = ::dup(fileno(f));
  std::fclose(f);
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

}  // namespace

TEST_CASE("LineReader: lines come back whole whatever the block size") {
  const std::string long_line(1000, 'x');
  const int fd = FdWith("a\r\n\n" + long_line + "\nbc\nlast");
  vigil::app::LineReader reader(fd, 16);
  std::vector<std::string> lines;
  std::string_view line;
  size_t readable = 0;
  while (reader.Next(&line, &readable)) {
    CHECK(readable >= line.size() + 64);
    lines.emplace_back(line);
  }
  ::close(fd);
  CHECK(reader.status().ok());
  CHECK(lines == std::vector<std::string>{"a", "", long_line, "bc", "last"});
  CHECK(reader.line_number() == 5);
}

TEST_CASE("LineReader: without refill, lines handed out stay valid") {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "line" + std::to_string(i) + "\n";
  const int fd = FdWith(text);
  vigil::app::LineReader reader(fd, 64);
  int total = 0;
  while (true) {
    std::vector<std::string_view> batch;
    std::string_view line;
    size_t readable = 0;
    while (reader.Next(&line, &readable, /*may_refill=*/batch.empty())) batch.push_back(line);
    if (batch.empty()) break;
    for (std::string_view l : batch) {
      CHECK(l == "line" + std::to_string(total));  // still intact after the whole batch
      ++total;
    }
  }
  ::close(fd);
  CHECK(total == 50);
}

TEST_SUITE_END();
