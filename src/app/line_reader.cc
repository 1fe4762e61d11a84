#include "app/line_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace vigil::app {

LineReader::LineReader(int fd, size_t block_size) : fd_(fd), buffer_(block_size) {}

// Moves the unread tail to the front and reads more after it, growing the buffer when a
// single line fills it.
bool LineReader::Fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() - end_ < 4096) buffer_.resize(buffer_.size() * 2);
  while (true) {
    const ssize_t n = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno != EINTR) {
      status_ = Status::IoError(std::string("read failed: ") + std::strerror(errno));
      eof_ = true;
      return false;
    }
  }
}

bool LineReader::Next(std::string_view* line) {
  while (true) {
    const char* start = buffer_.data() + begin_;
    const void* newline = std::memchr(start, '\n', end_ - begin_);
    size_t length;
    if (newline) {
      length = static_cast<const char*>(newline) - start;
    } else if (!Fill()) {
      if (begin_ == end_) return false;
      length = end_ - begin_;  // a last line without a line break
      start = buffer_.data() + begin_;
    } else {
      continue;
    }
    ++line_number_;
    *line = std::string_view(start, length);
    if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
    begin_ += std::min(length + 1, end_ - begin_);
    return true;
  }
}

}  // namespace vigil::app
