#pragma once
// SpillStore: where keys beyond the memory budget wait (nfa::StateSpill), one spill per
// worker over a RocksDB database of its own.
//
// The spill is not part of any checkpoint: it holds states newer than the last checkpoint,
// which a restart must not see, so it is emptied when opened. A key out of memory has its
// state in the spill if it was spilled since the process started, or else in the live
// database of the checkpoint store (the restored checkpoint, which no checkpoint since has
// changed for that key); reads look in that order.
// Thread safety: each worker's spill is used by that worker only; they share the database.

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "nfa/matcher.h"
#include "state/checkpoint_store.h"

namespace rocksdb {
class DB;
}

namespace vigil::state {

class SpillStore {
 public:
  // Spills for `workers` workers, over a database in `directory` opened by Open().
  SpillStore(std::string directory, size_t workers);
  ~SpillStore();

  // Opens the database, empty, and reads the checkpoint store's live database as a fallback.
  Status Open(const CheckpointStore* checkpoints);

  nfa::StateSpill* worker(size_t i);
  uint64_t disk_bytes() const;

 private:
  class WorkerSpill;
  std::string directory_;
  std::unique_ptr<rocksdb::DB> db_;
  const CheckpointStore* checkpoints_ = nullptr;
  std::vector<std::unique_ptr<WorkerSpill>> workers_;
};

}  // namespace vigil::state
