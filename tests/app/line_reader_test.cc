// LineReader: lines across block boundaries, long lines, CRLF, a last line without a break.
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
  while (reader.Next(&line)) lines.emplace_back(line);
  ::close(fd);
  CHECK(reader.status().ok());
  CHECK(lines == std::vector<std::string>{"a", "", long_line, "bc", "last"});
  CHECK(reader.line_number() == 5);
}

TEST_SUITE_END();
