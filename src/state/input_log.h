#pragma once
// InputLog: the input the server has acknowledged, on disk before the acknowledgement goes out.
//
// What it promises:
//   1. Everything Commit() returned OK for is read back by Read(), in the order it was
//      appended, after any crash of the process, kill -9 in the middle of a write included.
//      With Options::fsync it also survives a power loss.
//   2. A record a crash left half-written (a torn tail) is recognised when the log is opened
//      and cut off; it is never handed out as data.
//   3. Damage anywhere else is reported as kCorruption naming the file and offset, never
//      skipped and never cut off silently.
//
// Layout: records are appended to segment files in one directory. A segment is named after
// the first position it holds, zero-padded to 20 digits (00000000000000000042.log), and
// starts with a header (magic "VIGILLOG", u32 format version) so that a later format is
// recognised instead of misread. A record, little-endian:
//   u32 checksum  CRC-32C of everything after it in the record
//   u32 payload length
//   u8  kind, with bit 7 set on the last record of each Commit
//   u64 position
//   payload       the event's JSON text, or the watermark as an i64
// Positions increase strictly over the whole log, so every record of a segment comes before
// the first position of the next one; trimming and Read(after) rely on that. The mark on a
// Commit's last record makes a Commit all or nothing across a crash, as it is on an error:
// the records of a Commit that a crash cut short are dropped with its torn record.
//
// Owned by the input thread; not thread-safe.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vigil::state {

class InputLog {
 public:
  // kControl: something else that changes what later input does (a pattern change, a source
  // going idle, where the sources stand), in the caller's own encoding, so that a replay makes
  // the change where the first run did. kSourcedEvent: an event and the source it came from.
  enum class Kind : uint8_t { kEvent = 1, kWatermark = 2, kControl = 3, kSourcedEvent = 4 };

  struct Record {
    Kind kind;
    // Unique and strictly increasing over the log; gaps are allowed.
    uint64_t position;
    // kWatermark only, 0 otherwise.
    int64_t watermark_ms;
    // kEvent, kSourcedEvent: the event's JSON text; kControl: as appended; empty otherwise.
    // Valid during the visit only.
    std::string_view text;
    // kSourcedEvent only, 0 otherwise.
    uint32_t source = 0;
  };

  struct Options {
    // Where the segment files live; created if missing. Required.
    std::string directory;
    // A new segment starts at the next Commit once the current one holds at least this many
    // bytes (a segment exceeds it by at most one batch). Default: 64 MiB.
    size_t segment_bytes = size_t{64} << 20;
    // fdatasync on every Commit, so acknowledged input also survives a power loss. Without it
    // a crash of the process still loses nothing. Default: false.
    bool fsync = false;
  };

  // Opens the log in options.directory, or creates an empty one. A torn or corrupt record at
  // the very end of the newest segment (a crash during a write) is cut off with the rest of
  // its Commit, and a newest segment left without a complete Commit is removed; each is
  // described in *warnings (which may be null).
  // Errors: kInvalidArgument for bad options; kCorruption when a segment is not an input log
  // or when a damaged record in the newest segment is followed by intact ones (that is not
  // a torn write, and cutting it would lose acknowledged input); kFailedPrecondition for a
  // format version this build does not know; kIoError when the disk fails.
  static Result<std::unique_ptr<InputLog>> Open(Options options,
                                                std::vector<std::string>* warnings);

  ~InputLog();
  InputLog(const InputLog&) = delete;
  InputLog& operator=(const InputLog&) = delete;

  // Buffer a record for the next Commit; nothing reaches the disk before it.
  // REQUIRES: position > every position appended before (so position >= 1), and
  // text.size() < 4 GiB. A violation aborts: it would write a log that Read rejects.
  void AppendEvent(uint64_t position, std::string_view text);
  void AppendWatermark(uint64_t position, int64_t watermark_ms);
  void AppendControl(uint64_t position, std::string_view control);
  void AppendSourcedEvent(uint64_t position, uint32_t source, std::string_view text);

  // Writes the buffered records with one write (and fdatasync with Options::fsync), starting
  // a new segment first when the current one is full. OK when nothing is buffered.
  // On error none of the batch counts: the segment is cut back to where it was, the batch is
  // dropped, and its positions may be appended again. Errors: kIoError; after a failure
  // that could not be undone, every later Commit returns that failure again.
  Status Commit();

  // Makes every committed record survive a power loss (without Options::fsync, Commit leaves
  // that to the kernel): before something outside the process relies on the log holding them.
  // Errors: kIoError; once a sync has failed, every later Sync returns that failure.
  Status Sync();

  // The largest position committed; 0 when the log is empty.
  uint64_t last_position() const { return last_committed_; }
  // No record before this position is kept (trimmed); 0 when the log has no segment.
  uint64_t first_position() const { return segments_.empty() ? 0 : segments_.front().first_position; }

  // Calls `visit` for every committed record with position > after, in order. Stops at, and
  // returns, the first error `visit` returns. `visit` must not change the log.
  // Errors: kCorruption naming the segment file and offset; kIoError.
  Status Read(uint64_t after, const std::function<Status(const Record&)>& visit) const;

  // Deletes the oldest segments whose records all have position <= upto; never the segment
  // being written, so the log keeps its last position. Errors: kIoError.
  Status TrimThrough(uint64_t upto);

  // The size of all segment files, headers included.
  uint64_t bytes_on_disk() const;
  size_t segments() const { return segments_.size(); }

 private:
  struct Segment {
    uint64_t first_position;
    std::string path;
    uint64_t bytes;  // committed bytes, header included
    // Without Options::fsync: the segment, open until Sync() has synced it. Kept open, not
    // opened again by name: a writeback error is reported only to descriptors open when it
    // happened.
    int unsynced_fd = -1;
  };
  // Syncs and closes `segment.unsynced_fd`, if open; remembers a failure.
  Status SyncClosed(Segment& segment);

  explicit InputLog(Options options);

  Status Recover(std::vector<std::string>* warnings);
  void AppendRecord(Kind kind, uint64_t position, std::string_view payload);
  Status AppendToCurrentSegment();
  Status WriteNewSegment();

  const Options options_;
  std::vector<Segment> segments_;  // oldest first; the last one is written to
  int fd_ = -1;                    // the last segment, open for writing; -1 while there is none
  // A segment header followed by the records appended since the last Commit: the header is
  // there so that a batch that starts a new segment goes out in the same single write.
  std::string batch_;
  std::string sourced_;  // AppendSourcedEvent's payload, reused
  uint64_t batch_first_position_ = 0;
  size_t last_record_offset_ = 0;  // in batch_
  uint64_t last_appended_ = 0;
  uint64_t last_committed_ = 0;
  Status broken_;  // set when a failed Commit could not be undone
  bool directory_unsynced_ = false;  // a segment was created since the last Sync
  // The first failed sync, returned by every later Sync: the kernel reports a lost writeback
  // once, and a sync that then succeeds proves nothing about the data.
  Status sync_failed_;
};

}  // namespace vigil::state
