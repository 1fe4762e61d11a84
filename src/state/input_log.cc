#include "state/input_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>

#include "common/byte_codec.h"
#include "common/crc32c.h"

namespace vigil::state {

namespace {

constexpr std::string_view kMagic = "VIGILLOG";
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kSegmentHeaderBytes = 8 + 4;       // magic, format version
constexpr size_t kRecordHeaderBytes = 4 + 4 + 1 + 8;  // checksum, payload length, kind, position
constexpr size_t kChecksumBytes = 4;
constexpr size_t kWatermarkPayloadBytes = 8;
constexpr size_t kPositionDigits = 20;  // UINT64_MAX has 20 digits
// Where a record's fields start, from the start of the record.
constexpr size_t kLengthOffset = 4;
constexpr size_t kKindOffset = 8;
constexpr size_t kPositionOffset = 9;
constexpr uint8_t kEndOfCommit = 0x80;  // in the kind byte of a Commit's last record

void EncodeFixed32(char* dst, uint32_t value) {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}
void EncodeFixed64(char* dst, uint64_t value) {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}
uint32_t DecodeFixed32(const char* src) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t{static_cast<unsigned char>(src[i])} << (8 * i);
  return value;
}
uint64_t DecodeFixed64(const char* src) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t{static_cast<unsigned char>(src[i])} << (8 * i);
  return value;
}

uint32_t Checksum(const char* data, size_t size) {
  return Crc32c(std::string_view(data, size));
}

std::string SegmentHeader() {
  std::string header(kMagic);
  header.resize(kSegmentHeaderBytes);
  EncodeFixed32(header.data() + kMagic.size(), kFormatVersion);
  return header;
}

std::string SegmentPath(const std::string& directory, uint64_t first_position) {
  char name[kPositionDigits + sizeof(".log")];
  std::snprintf(name, sizeof(name), "%020llu.log", static_cast<unsigned long long>(first_position));
  return (std::filesystem::path(directory) / name).string();
}

// The first position of a segment file named like "00000000000000000042.log"; false for any
// other file name. Positions start at 1, so no segment is named 0.
bool ParseSegmentName(const std::string& name, uint64_t* first_position) {
  constexpr std::string_view kSuffix = ".log";
  if (name.size() != kPositionDigits + kSuffix.size() || !name.ends_with(kSuffix)) return false;
  const char* end = name.data() + kPositionDigits;
  const auto [stop, error] = std::from_chars(name.data(), end, *first_position);
  return error == std::errc() && stop == end && *first_position > 0;
}

Status ErrnoStatus(const std::string& what) {
  return Status::IoError(what + ": " + std::strerror(errno));
}

// Closes a file descriptor on every way out of a function.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads at most max_bytes from the start of `path` into *data.
Status ReadUpTo(const std::string& path, uint64_t max_bytes, std::string* data) {
  const ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(path + ": cannot open");
  struct stat info;
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(path + ": cannot stat");
  data->resize(std::min<uint64_t>(static_cast<uint64_t>(info.st_size), max_bytes));
  size_t done = 0;
  while (done < data->size()) {
    const ssize_t n =
        ::pread(fd.get(), data->data() + done, data->size() - done, static_cast<off_t>(done));
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      return ErrnoStatus(path + ": cannot read");
    }
  }
  data->resize(done);
  return Status::Ok();
}

// Writes all of `data` at `offset`, going on after partial writes and interruptions.
Status WriteAt(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(path + ": cannot write");
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// Makes a newly created segment's directory entry durable, which fdatasync on the file
// itself does not promise.
Status SyncDirectory(const std::string& directory) {
  const ScopedFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
    return ErrnoStatus(directory + ": cannot sync directory");
  }
  return Status::Ok();
}

Status CheckSegmentHeader(std::string_view data, const std::string& path) {
  if (data.size() < kSegmentHeaderBytes || data.substr(0, kMagic.size()) != kMagic) {
    return Status::Corruption(path + ": not an input log segment (no VIGILLOG header)");
  }
  const uint32_t version = DecodeFixed32(data.data() + kMagic.size());
  if (version != kFormatVersion) {
    return Status::FailedPrecondition(path + ": input log format version " +
                                      std::to_string(version) + "; this build reads version " +
                                      std::to_string(kFormatVersion) + " only");
  }
  return Status::Ok();
}

// Decodes the record at `offset` of a segment's bytes. Returns nullptr and sets *record,
// *ends_commit and *next (the offset after it), or says what is wrong with it.
// `previous_position` is the position the record must exceed.
const char* DecodeRecord(std::string_view data, size_t offset, uint64_t previous_position,
                         InputLog::Record* record, bool* ends_commit, size_t* next) {
  if (data.size() - offset < kRecordHeaderBytes) return "incomplete record header";
  const char* header = data.data() + offset;
  const uint32_t payload_bytes = DecodeFixed32(header + kLengthOffset);
  if (data.size() - offset - kRecordHeaderBytes < payload_bytes) return "payload runs past the end";
  const size_t record_bytes = kRecordHeaderBytes + payload_bytes;
  if (Checksum(header + kChecksumBytes, record_bytes - kChecksumBytes) != DecodeFixed32(header)) {
    return "checksum mismatch";
  }
  const auto kind_byte = static_cast<uint8_t>(header[kKindOffset]);
  const auto kind = static_cast<InputLog::Kind>(kind_byte & ~kEndOfCommit);
  const uint64_t position = DecodeFixed64(header + kPositionOffset);
  const std::string_view payload(header + kRecordHeaderBytes, payload_bytes);
  if (position <= previous_position) return "position does not follow the previous record's";
  if (kind == InputLog::Kind::kEvent || kind == InputLog::Kind::kControl) {
    *record = {kind, position, 0, payload};
  } else if (kind == InputLog::Kind::kSourcedEvent) {
    ByteReader in(payload);
    const uint64_t source = in.Below(uint64_t{1} << 32);
    if (!in.ok()) return "unreadable source";
    *record = {kind, position, 0, payload.substr(payload.size() - in.remaining()), static_cast<uint32_t>(source)};
  } else if (kind == InputLog::Kind::kWatermark && payload_bytes == kWatermarkPayloadBytes) {
    *record = {kind, position, static_cast<int64_t>(DecodeFixed64(payload.data())), {}};
  } else {
    return "unknown record kind or size";
  }
  *ends_commit = (kind_byte & kEndOfCommit) != 0;
  *next = offset + record_bytes;
  return nullptr;
}

// Whether an intact record starts anywhere after `offset`. A crash tears only the last
// write, so after a torn record there is nothing intact; an intact record there means the
// damage is in the middle of the log.
bool IntactRecordFollows(std::string_view data, size_t offset, uint64_t previous_position) {
  InputLog::Record record;
  bool ends_commit;
  size_t next;
  for (size_t at = offset + 1; at + kRecordHeaderBytes <= data.size(); ++at) {
    if (!DecodeRecord(data, at, previous_position, &record, &ends_commit, &next)) return true;
  }
  return false;
}

std::string CorruptRecordMessage(const std::string& path, size_t offset, const char* problem) {
  return path + ": corrupt record at offset " + std::to_string(offset) + " (" + problem + ")";
}

}  // namespace

InputLog::InputLog(Options options) : options_(std::move(options)), batch_(SegmentHeader()) {}

InputLog::~InputLog() {
  if (fd_ >= 0) ::close(fd_);
  for (const Segment& segment : segments_) {
    if (segment.unsynced_fd >= 0) ::close(segment.unsynced_fd);
  }
}

Result<std::unique_ptr<InputLog>> InputLog::Open(Options options,
                                                 std::vector<std::string>* warnings) {
  if (options.directory.empty()) {
    return Status::InvalidArgument("input log: directory is not set");
  }
  if (options.segment_bytes == 0) {
    return Status::InvalidArgument("input log: segment_bytes must be > 0");
  }
  std::error_code error;
  std::filesystem::create_directories(options.directory, error);
  if (error) {
    return Status::IoError(options.directory + ": cannot create directory: " + error.message());
  }
  std::unique_ptr<InputLog> log(new InputLog(std::move(options)));
  std::vector<std::string> ignored;
  if (Status status = log->Recover(warnings ? warnings : &ignored); !status.ok()) return status;
  return log;
}

// Finds the segments, checks their headers, and finds where the newest one ends: after its
// last complete Commit. Only the newest segment can hold a torn write, so only it is scanned.
Status InputLog::Recover(std::vector<std::string>* warnings) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(options_.directory, error)) {
    uint64_t first_position;
    if (!entry.is_regular_file(error) ||
        !ParseSegmentName(entry.path().filename().string(), &first_position)) {
      continue;
    }
    segments_.push_back({first_position, entry.path().string(), entry.file_size(error)});
    if (error) break;
  }
  if (error) {
    return Status::IoError(options_.directory + ": cannot list segments: " + error.message());
  }
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.first_position < b.first_position; });

  std::string data;
  for (size_t i = 0; i + 1 < segments_.size(); ++i) {
    Status status = ReadUpTo(segments_[i].path, kSegmentHeaderBytes, &data);
    if (status.ok()) status = CheckSegmentHeader(data, segments_[i].path);
    if (!status.ok()) return status;
  }

  while (!segments_.empty()) {
    Segment& newest = segments_.back();
    if (Status status = ReadUpTo(newest.path, UINT64_MAX, &data); !status.ok()) return status;
    // Where the last complete Commit ends, and its last position. Records of a Commit that a
    // crash interrupted are cut off with its torn record: none of them was acknowledged.
    size_t end = kSegmentHeaderBytes;
    uint64_t last_position = newest.first_position - 1;
    // A header shorter than its size is a crash while the segment was being created; its
    // records went out in the same write, so it holds none.
    if (data.size() >= kSegmentHeaderBytes) {
      if (Status status = CheckSegmentHeader(data, newest.path); !status.ok()) return status;
      size_t offset = kSegmentHeaderBytes;
      uint64_t previous_position = last_position;
      Record record;
      bool ends_commit;
      const char* problem = nullptr;
      while (offset < data.size() && !(problem = DecodeRecord(data, offset, previous_position,
                                                               &record, &ends_commit, &offset))) {
        previous_position = record.position;
        if (ends_commit) {
          end = offset;
          last_position = record.position;
        }
      }
      if (problem && IntactRecordFollows(data, offset, previous_position)) {
        return Status::Corruption(CorruptRecordMessage(newest.path, offset, problem) +
                                  ", followed by intact records: damage, not a torn write");
      }
    }
    if (last_position < newest.first_position) {
      if (::unlink(newest.path.c_str()) != 0) return ErrnoStatus(newest.path + ": cannot remove");
      warnings->push_back(newest.path +
                          ": removed, it holds no complete Commit (a crash while it was created)");
      segments_.pop_back();
      continue;
    }
    if (end < data.size()) {
      if (::truncate(newest.path.c_str(), static_cast<off_t>(end)) != 0) {
        return ErrnoStatus(newest.path + ": cannot cut off the torn tail");
      }
      warnings->push_back(newest.path + ": cut off the " + std::to_string(data.size() - end) +
                          " bytes after offset " + std::to_string(end) +
                          ", the part of a Commit that a crash interrupted");
    }
    fd_ = ::open(newest.path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoStatus(newest.path + ": cannot open for writing");
    newest.bytes = end;
    last_committed_ = last_position;
    last_appended_ = last_position;
    break;
  }
  // What an earlier process wrote may still be only in the kernel's cache (it crashed, or ran
  // without fsync): with fsync it is synced now, without it by the next Sync() (the newest
  // segment's through fd_).
  if (segments_.empty()) return Status::Ok();
  for (Segment& closed : std::span(segments_).first(segments_.size() - 1)) {
    closed.unsynced_fd = ::open(closed.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (closed.unsynced_fd < 0) return ErrnoStatus(closed.path + ": cannot open");
    if (options_.fsync) {
      if (Status s = SyncClosed(closed); !s.ok()) return s;
    }
  }
  if (!options_.fsync) {
    directory_unsynced_ = true;
    return Status::Ok();
  }
  if (::fdatasync(fd_) != 0) return ErrnoStatus(segments_.back().path + ": cannot sync");
  return SyncDirectory(options_.directory);
}

void InputLog::AppendEvent(uint64_t position, std::string_view text) {
  AppendRecord(Kind::kEvent, position, text);
}

void InputLog::AppendControl(uint64_t position, std::string_view control) {
  AppendRecord(Kind::kControl, position, control);
}

void InputLog::AppendSourcedEvent(uint64_t position, uint32_t source, std::string_view text) {
  sourced_.clear();
  PutVarint(&sourced_, source);
  sourced_.append(text);
  AppendRecord(Kind::kSourcedEvent, position, sourced_);
}

void InputLog::AppendWatermark(uint64_t position, int64_t watermark_ms) {
  char payload[kWatermarkPayloadBytes];
  EncodeFixed64(payload, static_cast<uint64_t>(watermark_ms));
  AppendRecord(Kind::kWatermark, position, std::string_view(payload, sizeof(payload)));
}

// Encodes the record in place at the end of the batch, so a batch allocates only while the
// buffer grows past its largest size so far.
void InputLog::AppendRecord(Kind kind, uint64_t position, std::string_view payload) {
  if (position <= last_appended_ || payload.size() > UINT32_MAX) {
    std::fprintf(stderr,
                 "%s:%d: InputLog: record at position %llu of %zu bytes appended after position "
                 "%llu\n",
                 __FILE__, __LINE__, static_cast<unsigned long long>(position), payload.size(),
                 static_cast<unsigned long long>(last_appended_));
    std::abort();
  }
  if (batch_.size() == kSegmentHeaderBytes) batch_first_position_ = position;
  last_appended_ = position;
  const size_t start = batch_.size();
  last_record_offset_ = start;
  batch_.resize(start + kRecordHeaderBytes);
  char* header = batch_.data() + start;
  EncodeFixed32(header + kLengthOffset, static_cast<uint32_t>(payload.size()));
  header[kKindOffset] = static_cast<char>(kind);
  EncodeFixed64(header + kPositionOffset, position);
  batch_.append(payload);
  char* record = batch_.data() + start;  // header may have moved with the append
  EncodeFixed32(record, Checksum(record + kChecksumBytes, batch_.size() - start - kChecksumBytes));
}

Status InputLog::Commit() {
  if (batch_.size() == kSegmentHeaderBytes) return Status::Ok();
  // Marking the Commit's end lets Open tell a whole batch from one a crash cut short.
  char* last_record = batch_.data() + last_record_offset_;
  last_record[kKindOffset] = static_cast<char>(last_record[kKindOffset] | kEndOfCommit);
  EncodeFixed32(last_record, Checksum(last_record + kChecksumBytes,
                                      batch_.size() - last_record_offset_ - kChecksumBytes));
  Status status = broken_;
  if (status.ok()) {
    const bool start_segment =
        segments_.empty() || segments_.back().bytes >= options_.segment_bytes;
    status = start_segment ? WriteNewSegment() : AppendToCurrentSegment();
  }
  if (status.ok()) {
    last_committed_ = last_appended_;
  } else {
    last_appended_ = last_committed_;
  }
  batch_.resize(kSegmentHeaderBytes);
  return status;
}

Status InputLog::AppendToCurrentSegment() {
  Segment& current = segments_.back();
  const std::string_view records = std::string_view(batch_).substr(kSegmentHeaderBytes);
  Status status = WriteAt(fd_, records, current.bytes, current.path);
  if (status.ok() && options_.fsync && ::fdatasync(fd_) != 0) {
    status = ErrnoStatus(current.path + ": cannot sync");
  }
  if (!status.ok()) {
    // Left in place, the partial batch would be read back as input that was never acknowledged.
    if (::ftruncate(fd_, static_cast<off_t>(current.bytes)) != 0) {
      broken_ = ErrnoStatus(current.path +
                            ": cannot cut back a failed write, the input log takes no more");
    }
    return status;
  }
  current.bytes += records.size();
  return Status::Ok();
}

Status InputLog::WriteNewSegment() {
  Segment segment{batch_first_position_, SegmentPath(options_.directory, batch_first_position_),
                  batch_.size()};
  const int fd = ::open(segment.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(segment.path + ": cannot create");
  Status status = WriteAt(fd, batch_, 0, segment.path);
  if (status.ok() && options_.fsync) {
    status = ::fdatasync(fd) == 0 ? SyncDirectory(options_.directory)
                                  : ErrnoStatus(segment.path + ": cannot sync");
  }
  if (!status.ok()) {
    ::close(fd);
    // Left in place, the segment would hold input that was never acknowledged, under a name
    // that later positions may fall below.
    if (::unlink(segment.path.c_str()) != 0) {
      broken_ = ErrnoStatus(segment.path +
                            ": cannot remove after a failed write, the input log takes no more");
    }
    return status;
  }
  if (fd_ >= 0) {
    // Synced by the next Sync(), if one comes: syncing a whole segment here held the input
    // thread for 35-40 ms each time, for nothing when nobody asks the log to survive a
    // power loss.
    if (options_.fsync) {
      ::close(fd_);
    } else {
      segments_.back().unsynced_fd = fd_;
    }
  }
  fd_ = fd;
  directory_unsynced_ = !options_.fsync;
  segments_.push_back(std::move(segment));
  return Status::Ok();
}

Status InputLog::SyncClosed(Segment& segment) {
  if (segment.unsynced_fd < 0) return Status::Ok();
  const bool synced = ::fdatasync(segment.unsynced_fd) == 0;
  if (!synced) sync_failed_ = ErrnoStatus(segment.path + ": cannot sync");
  ::close(segment.unsynced_fd);
  segment.unsynced_fd = -1;
  return sync_failed_;
}

Status InputLog::Sync() {
  if (!sync_failed_.ok()) return sync_failed_;
  if (options_.fsync || segments_.empty()) return Status::Ok();
  for (Segment& segment : segments_) {
    if (Status s = SyncClosed(segment); !s.ok()) return s;
  }
  if (::fdatasync(fd_) != 0) {
    sync_failed_ = ErrnoStatus(segments_.back().path + ": cannot sync");
    return sync_failed_;
  }
  if (directory_unsynced_) {
    if (Status s = SyncDirectory(options_.directory); !s.ok()) {
      sync_failed_ = s;
      return s;
    }
    directory_unsynced_ = false;
  }
  return Status::Ok();
}

Status InputLog::Read(uint64_t after, const std::function<Status(const Record&)>& visit) const {
  std::string data;
  uint64_t previous_position = 0;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& segment = segments_[i];
    const bool all_at_or_before =
        i + 1 < segments_.size() && segments_[i + 1].first_position - 1 <= after;
    if (all_at_or_before) continue;
    if (Status status = ReadUpTo(segment.path, segment.bytes, &data); !status.ok()) return status;
    if (data.size() < segment.bytes) {
      return Status::Corruption(segment.path + ": " + std::to_string(data.size()) + " bytes, but " +
                                std::to_string(segment.bytes) + " were committed");
    }
    if (Status status = CheckSegmentHeader(data, segment.path); !status.ok()) return status;
    previous_position = std::max(previous_position, segment.first_position - 1);
    size_t offset = kSegmentHeaderBytes;
    while (offset < data.size()) {
      Record record;
      bool ends_commit;
      const char* problem =
          DecodeRecord(data, offset, previous_position, &record, &ends_commit, &offset);
      if (problem) {
        return Status::Corruption(CorruptRecordMessage(segment.path, offset, problem));
      }
      previous_position = record.position;
      if (record.position <= after) continue;
      if (Status status = visit(record); !status.ok()) return status;
    }
  }
  return Status::Ok();
}

Status InputLog::TrimThrough(uint64_t upto) {
  // Every record of a segment comes before the next segment's first position.
  while (segments_.size() > 1 && segments_[1].first_position - 1 <= upto) {
    Segment& oldest = segments_.front();
    if (::unlink(oldest.path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(oldest.path + ": cannot remove");
    if (oldest.unsynced_fd >= 0) ::close(oldest.unsynced_fd);
    segments_.erase(segments_.begin());
  }
  return Status::Ok();
}

uint64_t InputLog::bytes_on_disk() const {
  uint64_t bytes = 0;
  for (const Segment& segment : segments_) bytes += segment.bytes;
  return bytes;
}

}  // namespace vigil::state
