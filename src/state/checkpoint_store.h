#pragma once
// CheckpointStore: the state backend on RocksDB, and its checkpoints.
//
// The keys' NFA states (nfa::StateWriter's keys) live in a RocksDB database, the live one,
// which is written only at checkpoints. A checkpoint is a RocksDB checkpoint of it (hard links
// to its immutable SST files, so a checkpoint costs what changed since the last, not the whole
// state) plus a meta file: the engine's progress, the input position and alert output
// position it matches, and the patterns it was taken under.
//
// Layout of the directory:
//   live/                 the database the next checkpoint is written to
//   checkpoints/<id>/     one checkpoint; ids increase
//   checkpoints/<id>.tmp/ one being made, or made and not yet kept (see Write; removed at
//                         Open: a crash came first)
//   checkpoints/<id>.bad/ one that did not load, set aside
//
// Promises:
//  1. A checkpoint exists under its final name only once complete and validated: the SST files
//     new in it pass their block checksums, and its meta file, written last with its own
//     checksum, is synced before the directory is renamed into place.
//  2. A checkpoint that does not load (missing, truncated or corrupt files) is never half
//     used: restoring tries the next older one (the caller reports why).
//  3. The newest `retain` checkpoints are kept; older ones are deleted after a new one counts.
// Thread safety: Commit, Seal, Keep, Adopt, StartEmpty and List are for one thread, Write may
// run on another (see there), and each writer on a worker's (see Writers); a Reader may be
// scanned by several threads at once.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "nfa/matcher.h"

namespace rocksdb {
class DB;
}

namespace vigil::state {

// A pattern as it was when a checkpoint was taken.
struct SavedPattern {
  std::string id;
  uint64_t version = 0;
  std::string source;
};

struct CheckpointMeta {
  uint64_t id = 0;
  int64_t created_ms = 0;   // wall clock, epoch ms
  int64_t duration_ms = 0;  // from the barrier to the checkpoint written (not the wait to keep it)
  uint64_t input_position = 0;  // the last input position whose effects it holds
  std::string engine_progress;  // ShardedMatcher::Checkpoint's
  std::string output_position;  // where the alert output stood (the output's own format)
  std::string input_progress;   // where the input's sources stood (the input's own format)
  std::vector<SavedPattern> patterns;
  uint64_t bytes = 0;      // the checkpoint's files
  uint64_t new_bytes = 0;  // of which first written by this checkpoint
  // Key puts and deletes since the previous checkpoint (a key written ahead, then again, twice).
  uint64_t keys_written = 0;
};

class CheckpointStore {
 public:
  struct Options {
    std::string directory;
    size_t retain = 3;
  };

  // Opens the directory (creating it), removing checkpoints left half-made. Does not open the
  // live database: call Adopt() or StartEmpty() first.
  static Result<std::unique_ptr<CheckpointStore>> Open(Options options);
  ~CheckpointStore();

  // The checkpoints that are complete by name, newest first, with their meta when it reads
  // (a checkpoint whose meta does not read is listed with an error).
  struct Listed {
    uint64_t id;
    Result<CheckpointMeta> meta;
  };
  std::vector<Listed> Candidates() const;

  // Read access to one checkpoint's keys, for ShardedMatcher::Restore.
  class Reader {
   public:
    ~Reader();
    // Visits every key, in key order. Thread-safe.
    Status Scan(const engine::ShardedMatcher::KeyVisitor& visit) const;

   private:
    friend class CheckpointStore;
    std::unique_ptr<rocksdb::DB> db_;
  };
  // Opens checkpoint `id` read-only and checks every block's checksum.
  Result<std::unique_ptr<Reader>> OpenReader(uint64_t id) const;

  // Makes checkpoint `id` the live database (the next checkpoint builds on it) and sets the
  // checkpoints newer than it, which did not load, aside (renamed <id>.bad, never loaded).
  Status Adopt(uint64_t id);
  // Starts from no state: an empty live database; every checkpoint is set aside.
  Status StartEmpty();

  // The writers collecting the next checkpoint's changes for `workers` workers, ahead of its
  // barrier or at it; writer i is used on worker i's thread only, never during Seal. They last
  // until a call with another count, which drops what they hold.
  std::vector<nfa::StateWriter*> Writers(size_t workers);
  // The changes the writers hold are the next checkpoint's; the writers start again empty.
  // Called after the checkpoint's barrier.
  void Seal();
  // Seal, then writes the sealed changes and makes checkpoint `meta.id = last id + 1` of them;
  // fills in meta's sizes and its duration (from `started_steady_ms`, when the barrier began).
  // REQUIRES: Adopt() or StartEmpty() was called.
  Result<CheckpointMeta> Commit(CheckpointMeta meta, int64_t started_steady_ms);
  // Commit in steps, so that the writing (the long part) can run on another thread while the
  // owner goes on, and the owner decides when the checkpoint may count: Seal, then Write makes
  // the checkpoint on disk, complete but under its temporary name (a crash before Keep drops
  // it), and Keep puts it in place and counts it (checkpoints() and the pruning of old ones).
  // Until Keep, only Writers (the writers, for the checkpoint after), GetLive, checkpoints()
  // and disk_bytes() may be used meanwhile; no other Seal or Write. After Keep fails (the
  // rename), the next Write makes the same checkpoint id again.
  Result<CheckpointMeta> Write(CheckpointMeta meta, int64_t started_steady_ms);
  Status Keep(const CheckpointMeta& meta);

  // The state of one key in the live database (the checkpoint adopted, updated by every
  // checkpoint since). Thread-safe. Errors: kNotFound, kIoError.
  Result<std::string> GetLive(std::string_view pattern_id, std::string_view identity) const;
  // How a key is named in the databases.
  static std::string KeyOf(std::string_view pattern_id, std::string_view identity);

  // The checkpoints kept, newest first.
  const std::vector<CheckpointMeta>& checkpoints() const { return kept_; }
  // Bytes of the live database and the checkpoints' directories (shared files counted once).
  uint64_t disk_bytes() const;

 private:
  explicit CheckpointStore(Options options);
  std::string PathOf(uint64_t id) const;
  Status OpenLive();
  Status Validate(const std::string& dir, uint64_t previous_id, uint64_t* bytes, uint64_t* new_bytes) const;
  void Prune();
  void SetAside(uint64_t id) const;
  size_t KeptBatchBytes() const;

  struct Changes;
  class BatchWriter;
  Options options_;
  std::unique_ptr<rocksdb::DB> live_;
  std::vector<std::unique_ptr<BatchWriter>> writers_;
  std::vector<Changes> sealed_;  // the checkpoint being written
  std::vector<CheckpointMeta> kept_;  // newest first
  uint64_t last_id_ = 0;
};

// The meta file's encoding, exposed for tests: magic, format version, fields, checksum.
std::string EncodeCheckpointMeta(const CheckpointMeta& meta);
Result<CheckpointMeta> DecodeCheckpointMeta(std::string_view bytes);

}  // namespace vigil::state
