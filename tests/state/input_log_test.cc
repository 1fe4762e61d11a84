// InputLog's promises: what was committed reads back in order across reopening and segments;
// the tail of a Commit that a crash interrupted is cut off at Open, with a warning, and the
// log goes on after it; damage anywhere else is an error naming the file; trimming removes
// only whole segments; Sync reaches every segment not yet synced; a failed Commit leaves
// nothing behind.
#include "state/input_log.h"

#include <doctest/doctest.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/temp_dir.h"

TEST_SUITE_BEGIN("state");

namespace {

using vigil::Status;
using vigil::state::InputLog;
using vigil::testing::TempDir;

// A record as Read hands it out, with the text copied so it outlives the visit.
struct Seen {
  InputLog::Kind kind;
  uint64_t position;
  int64_t watermark_ms;
  std::string text;
  bool operator==(const Seen&) const = default;
};

std::string EventText(uint64_t position) {
  return R"({"ts":)" + std::to_string(1000 + position) + R"(,"user":"u)" +
         std::to_string(position % 7) + R"("})";
}

Seen Event(uint64_t position) { return {InputLog::Kind::kEvent, position, 0, EventText(position)}; }
Seen Watermark(uint64_t position, int64_t ms) {
  return {InputLog::Kind::kWatermark, position, ms, ""};
}

// Events at positions first..last.
std::vector<Seen> Events(uint64_t first, uint64_t last) {
  std::vector<Seen> events;
  for (uint64_t p = first; p <= last; ++p) events.push_back(Event(p));
  return events;
}

std::vector<Seen> operator+(std::vector<Seen> a, const std::vector<Seen>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

InputLog::Options OptionsFor(const TempDir& dir, size_t segment_bytes = size_t{64} << 20) {
  InputLog::Options options;
  options.directory = dir.path() + "/log";
  options.segment_bytes = segment_bytes;
  return options;
}

std::unique_ptr<InputLog> OpenLog(const InputLog::Options& options,
                                  std::vector<std::string>* warnings = nullptr) {
  auto log = InputLog::Open(options, warnings);
  REQUIRE_MESSAGE(log.ok(), log.status().message());
  return std::move(log).value();
}

void Append(InputLog& log, const std::vector<Seen>& records) {
  for (const Seen& r : records) {
    if (r.kind == InputLog::Kind::kEvent) {
      log.AppendEvent(r.position, r.text);
    } else {
      log.AppendWatermark(r.position, r.watermark_ms);
    }
  }
}

void Commit(InputLog& log, const std::vector<Seen>& records) {
  Append(log, records);
  const Status status = log.Commit();
  REQUIRE_MESSAGE(status.ok(), status.message());
}

std::vector<Seen> ReadAll(const InputLog& log, uint64_t after = 0) {
  std::vector<Seen> seen;
  const Status status = log.Read(after, [&](const InputLog::Record& r) {
    seen.push_back({r.kind, r.position, r.watermark_ms, std::string(r.text)});
    return Status::Ok();
  });
  REQUIRE_MESSAGE(status.ok(), status.message());
  return seen;
}

// The segment files, oldest first.
std::vector<std::string> SegmentFiles(const InputLog::Options& options) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(options.directory)) {
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// How many of this process's open files are under `directory`.
size_t OpenFilesUnder(const std::string& directory) {
  const std::string prefix = std::filesystem::canonical(directory).string() + "/";  // as /proc shows them
  size_t open = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const std::filesystem::path target = std::filesystem::read_symlink(entry.path(), error);
    if (!error && target.string().starts_with(prefix)) ++open;
  }
  return open;
}

std::string FileName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void Overwrite(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

constexpr size_t kSegmentHeaderBytes = 12;
constexpr size_t kRecordHeaderBytes = 17;

size_t RecordBytes(const Seen& record) { return kRecordHeaderBytes + record.text.size(); }

}  // namespace

TEST_CASE("InputLog: a new log is empty and an empty Commit writes nothing") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  auto log = OpenLog(options);
  CHECK(log->last_position() == 0);
  CHECK(log->Commit().ok());
  CHECK(log->segments() == 0);
  CHECK(log->bytes_on_disk() == 0);
  CHECK(ReadAll(*log).empty());
}

TEST_CASE("InputLog: events and watermarks read back in order after reopening") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  const std::vector<Seen> first = Events(1, 3) + std::vector<Seen>{Watermark(4, 1003)};
  const std::vector<Seen> second =
      std::vector<Seen>{Event(7), Watermark(9, -5), Event(10), Watermark(11, INT64_MAX)};
  {
    auto log = OpenLog(options);
    Commit(*log, first);
    Commit(*log, second);
    CHECK(ReadAll(*log) == first + second);
  }
  std::vector<std::string> warnings;
  auto log = OpenLog(options, &warnings);
  CHECK(warnings.empty());
  CHECK(ReadAll(*log) == first + second);
  CHECK(log->bytes_on_disk() == std::filesystem::file_size(SegmentFiles(options).at(0)));
}

TEST_CASE("InputLog: positions continue after reopening") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  {
    auto log = OpenLog(options);
    Commit(*log, Events(1, 5));
    CHECK(log->last_position() == 5);
  }
  {
    auto log = OpenLog(options);
    CHECK(log->last_position() == 5);
    Commit(*log, Events(6, 8));
    CHECK(log->last_position() == 8);
  }
  auto log = OpenLog(options);
  CHECK(log->last_position() == 8);
  CHECK(ReadAll(*log) == Events(1, 8));
}

TEST_CASE("InputLog: a full segment rolls over to a new one, named after its first position") {
  TempDir dir;
  const auto options = OptionsFor(dir, /*segment_bytes=*/400);
  {
    auto log = OpenLog(options);
    for (uint64_t first = 1; first <= 50; first += 5) Commit(*log, Events(first, first + 4));
    CHECK(log->segments() >= 3);
    CHECK(log->segments() == SegmentFiles(options).size());
    CHECK(ReadAll(*log) == Events(1, 50));
  }
  const std::vector<std::string> files = SegmentFiles(options);
  CHECK(FileName(files.front()) == "00000000000000000001.log");
  for (const std::string& file : files) {
    CAPTURE(file);
    const uint64_t first_position = std::stoull(FileName(file));
    CHECK(FileName(file).size() == 24);
    CHECK(first_position % 5 == 1);  // each Commit went whole into one segment
  }
  auto log = OpenLog(options);
  CHECK(log->segments() == files.size());
  CHECK(ReadAll(*log) == Events(1, 50));
}

TEST_CASE("InputLog: Read(after) hands out only the records after the position") {
  TempDir dir;
  auto log = OpenLog(OptionsFor(dir, /*segment_bytes=*/1));  // one segment per Commit
  for (uint64_t first = 1; first <= 30; first += 10) Commit(*log, Events(first, first + 9));
  CHECK(ReadAll(*log, 0) == Events(1, 30));
  CHECK(ReadAll(*log, 10) == Events(11, 30));
  CHECK(ReadAll(*log, 17) == Events(18, 30));
  CHECK(ReadAll(*log, 30).empty());

  SUBCASE("and stops at the first error the visitor returns") {
    std::vector<uint64_t> visited;
    const Status status = log->Read(5, [&](const InputLog::Record& r) {
      visited.push_back(r.position);
      return r.position == 8 ? Status::Internal("enough") : Status::Ok();
    });
    CHECK(status.message() == "enough");
    CHECK(visited == std::vector<uint64_t>{6, 7, 8});
  }
}

TEST_CASE("InputLog: the part of a Commit that a crash interrupted is cut off at Open") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  const std::vector<Seen> kept = Events(1, 3);
  const std::vector<Seen> last_commit = Events(4, 5);
  {
    auto log = OpenLog(options);
    Commit(*log, kept);
    Commit(*log, last_commit);
  }
  const std::string segment = SegmentFiles(options).at(0);
  const std::string intact = Contents(segment);
  std::vector<Seen> expected = kept;

  SUBCASE("torn in the middle of its last record") {
    Overwrite(segment, intact.substr(0, intact.size() - 10));
  }
  SUBCASE("torn between its records: the records before the tear go too") {
    Overwrite(segment, intact.substr(0, intact.size() - RecordBytes(last_commit.back())));
  }
  SUBCASE("torn inside its first record's header") {
    const size_t commit_bytes = RecordBytes(last_commit[0]) + RecordBytes(last_commit[1]);
    Overwrite(segment, intact.substr(0, intact.size() - commit_bytes + 5));
  }
  SUBCASE("followed by garbage") {
    using std::string_literals::operator""s;
    Overwrite(segment, intact + "\x07\x00\x00\x00 not a record, the tail of a lost write"s);
    expected = kept + last_commit;
  }

  std::vector<std::string> warnings;
  {
    auto log = OpenLog(options, &warnings);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find(FileName(segment)) != std::string::npos);
    CHECK(log->last_position() == expected.back().position);
    CHECK(ReadAll(*log) == expected);
    Commit(*log, Events(6, 7));
  }
  warnings.clear();
  auto log = OpenLog(options, &warnings);
  CHECK(warnings.empty());
  CHECK(ReadAll(*log) == expected + Events(6, 7));
}

TEST_CASE("InputLog: a newest segment that a crash left without a complete Commit is removed at Open") {
  TempDir dir;
  const auto options = OptionsFor(dir, /*segment_bytes=*/1);  // one segment per Commit
  {
    auto log = OpenLog(options);
    Commit(*log, Events(1, 3));
    Commit(*log, Events(4, 6));
  }
  const std::string newest = SegmentFiles(options).at(1);
  SUBCASE("with its header torn") { Overwrite(newest, Contents(newest).substr(0, 5)); }
  SUBCASE("with its only Commit torn") { Overwrite(newest, Contents(newest).substr(0, 40)); }

  std::vector<std::string> warnings;
  auto log = OpenLog(options, &warnings);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find(FileName(newest)) != std::string::npos);
  CHECK(log->segments() == 1);
  CHECK(log->last_position() == 3);
  Commit(*log, Events(4, 4));
  CHECK(ReadAll(*log) == Events(1, 4));
}

TEST_CASE("InputLog: a flipped byte in an earlier record fails Read with the file and offset") {
  TempDir dir;
  const auto options = OptionsFor(dir, /*segment_bytes=*/1);  // one segment per Commit
  {
    auto log = OpenLog(options);
    Commit(*log, Events(1, 3));
    Commit(*log, Events(4, 6));
  }
  const std::string damaged = SegmentFiles(options).at(0);
  std::string bytes = Contents(damaged);
  const size_t second_record = kSegmentHeaderBytes + RecordBytes(Event(1));
  bytes[second_record + kRecordHeaderBytes + 3] ^= 0x20;
  Overwrite(damaged, bytes);

  auto log = OpenLog(options);
  const Status status = log->Read(0, [](const InputLog::Record&) { return Status::Ok(); });
  CHECK(status.code() == Status::Code::kCorruption);
  CHECK(status.message().find(FileName(damaged)) != std::string::npos);
  CHECK(status.message().find("offset " + std::to_string(second_record)) != std::string::npos);
  CHECK(ReadAll(*log, 3) == Events(4, 6));  // the segments after the damage still read
}

TEST_CASE("InputLog: damage before intact records in the newest segment is refused at Open, not cut off") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  {
    auto log = OpenLog(options);
    Commit(*log, Events(1, 3));
    Commit(*log, Events(4, 6));
  }
  const std::string segment = SegmentFiles(options).at(0);
  std::string bytes = Contents(segment);
  bytes[kSegmentHeaderBytes + kRecordHeaderBytes + 2] ^= 0x01;
  Overwrite(segment, bytes);

  auto log = InputLog::Open(options, nullptr);
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == Status::Code::kCorruption);
  CHECK(log.status().message().find(FileName(segment)) != std::string::npos);
  CHECK(Contents(segment) == bytes);
}

TEST_CASE("InputLog: TrimThrough deletes only whole segments at or before the position") {
  TempDir dir;
  const auto options = OptionsFor(dir, /*segment_bytes=*/1);  // one segment per Commit
  auto log = OpenLog(options);
  for (uint64_t first = 1; first <= 50; first += 5) Commit(*log, Events(first, first + 4));
  REQUIRE(log->segments() == 10);

  CHECK(log->TrimThrough(12).ok());  // 11..15 are not all behind 12
  CHECK(log->segments() == 8);
  CHECK(FileName(SegmentFiles(options).front()) == "00000000000000000011.log");
  CHECK(ReadAll(*log) == Events(11, 50));

  CHECK(log->TrimThrough(10).ok());
  CHECK(log->segments() == 8);

  CHECK(log->TrimThrough(UINT64_MAX).ok());  // the segment being written stays
  CHECK(log->segments() == 1);
  CHECK(log->last_position() == 50);
  CHECK(log->bytes_on_disk() == std::filesystem::file_size(SegmentFiles(options).at(0)));
  Commit(*log, Events(51, 52));
  CHECK(ReadAll(*log) == Events(46, 52));

  log.reset();
  log = OpenLog(options);
  CHECK(log->last_position() == 52);
  CHECK(ReadAll(*log) == Events(46, 52));
}

TEST_CASE("InputLog: segments not yet synced stay open until Sync syncs them") {
  // Starting a segment does not sync the one it closes (that held the input for a whole
  // segment's writeback): it stays open for the next Sync, since a writeback error is
  // reported only to descriptors open when it happened. The log's open files show which.
  TempDir dir;
  auto options = OptionsFor(dir, /*segment_bytes=*/1);  // one segment per Commit
  auto log = OpenLog(options);
  for (uint64_t first = 1; first <= 15; first += 5) Commit(*log, Events(first, first + 4));
  REQUIRE(SegmentFiles(options).size() == 3);
  CHECK(OpenFilesUnder(options.directory) == 3);

  SUBCASE("Sync syncs and closes the closed segments") {
    CHECK(log->Sync().ok());
    CHECK(OpenFilesUnder(options.directory) == 1);  // the one being written
    Commit(*log, Events(16, 20));
    CHECK(OpenFilesUnder(options.directory) == 2);
    CHECK(log->Sync().ok());
    CHECK(OpenFilesUnder(options.directory) == 1);
  }
  SUBCASE("trimmed segments are closed") {
    REQUIRE(log->TrimThrough(UINT64_MAX).ok());
    CHECK(OpenFilesUnder(options.directory) == 1);
    CHECK(log->Sync().ok());
  }
  SUBCASE("segments found at Open wait for Sync too: a crashed process left them to the kernel") {
    log.reset();
    CHECK(OpenFilesUnder(options.directory) == 0);
    log = OpenLog(options);
    CHECK(OpenFilesUnder(options.directory) == 3);  // the two closed ones, and the newest for writing
    Commit(*log, Events(16, 20));
    CHECK(OpenFilesUnder(options.directory) == 4);
    CHECK(log->Sync().ok());
    CHECK(OpenFilesUnder(options.directory) == 1);
  }
  SUBCASE("with fsync, every Commit is synced, and so is what Open finds") {
    log.reset();
    options.fsync = true;
    log = OpenLog(options);
    CHECK(OpenFilesUnder(options.directory) == 1);
    Commit(*log, Events(16, 20));
    CHECK(OpenFilesUnder(options.directory) == 1);
  }
}

TEST_CASE("InputLog: a Commit that fails leaves nothing of its batch behind") {
  TempDir dir;
  size_t segment_bytes = size_t{64} << 20;
  SUBCASE("appending to the current segment") {}
  SUBCASE("starting a new segment") { segment_bytes = 1; }
  const auto options = OptionsFor(dir, segment_bytes);
  auto log = OpenLog(options);
  Commit(*log, Events(1, 3));
  const std::vector<std::string> files_before = SegmentFiles(options);
  const uint64_t bytes_before = log->bytes_on_disk();

  // A file size limit makes the write stop part way (a short write, then EFBIG), like a
  // full disk.
  rlimit saved;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = bytes_before + 50;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
  Append(*log, Events(4, 8));
  const Status status = log->Commit();
  REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
  std::signal(SIGXFSZ, saved_handler);

  CHECK(status.code() == Status::Code::kIoError);
  CHECK(log->last_position() == 3);
  CHECK(log->bytes_on_disk() == bytes_before);
  CHECK(SegmentFiles(options) == files_before);
  CHECK(std::filesystem::file_size(files_before.back()) == bytes_before);
  Commit(*log, Events(4, 4));  // the failed batch's positions may be used again
  CHECK(ReadAll(*log) == Events(1, 4));
}

TEST_CASE("InputLog: a segment of an unknown format version is refused") {
  TempDir dir;
  const auto options = OptionsFor(dir);
  std::filesystem::create_directories(options.directory);
  using std::string_literals::operator""s;
  Overwrite(options.directory + "/00000000000000000001.log", "VIGILLOG\x02\x00\x00\x00"s);

  auto log = InputLog::Open(options, nullptr);
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == Status::Code::kFailedPrecondition);
  CHECK(log.status().message().find("version 2") != std::string::npos);
}
