#include "state/spill_store.h"

#include <filesystem>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

namespace vigil::state {
namespace fs = std::filesystem;

class SpillStore::WorkerSpill : public nfa::StateSpill {
 public:
  explicit WorkerSpill(SpillStore* store) : store_(store) {}

  Status Put(std::string_view pattern_id, std::string_view identity, std::string_view state) override {
    if (!store_->db_) return Status::FailedPrecondition("the spill is not open");
    rocksdb::WriteOptions write;
    write.disableWAL = true;  // emptied at every start: nothing to recover
    const rocksdb::Status s = store_->db_->Put(write, CheckpointStore::KeyOf(pattern_id, identity),
                                               rocksdb::Slice(state.data(), state.size()));
    if (!s.ok()) return Status::IoError("spilling a key's state: " + s.ToString());
    return Status::Ok();
  }

  Result<std::string> Get(std::string_view pattern_id, std::string_view identity, bool take) override {
    if (!store_->db_) return Status::FailedPrecondition("the spill is not open");
    const std::string key = CheckpointStore::KeyOf(pattern_id, identity);
    std::string value;
    const rocksdb::Status s = store_->db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return store_->checkpoints_->GetLive(pattern_id, identity);
    if (!s.ok()) return Status::IoError("reading a spilled key's state: " + s.ToString());
    if (take) {
      rocksdb::WriteOptions write;
      write.disableWAL = true;
      store_->db_->Delete(write, key).PermitUncheckedError();  // a stale copy is never read: the key is in memory
    }
    return value;
  }

 private:
  SpillStore* store_;
};

SpillStore::SpillStore(std::string directory, size_t workers) : directory_(std::move(directory)) {
  for (size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<WorkerSpill>(this));
}

SpillStore::~SpillStore() = default;

Status SpillStore::Open(const CheckpointStore* checkpoints) {
  checkpoints_ = checkpoints;
  std::error_code ec;
  fs::remove_all(directory_, ec);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_open_files = 256;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(options, directory_, &db);
  if (!s.ok()) return Status::IoError("opening the spill " + directory_ + ": " + s.ToString());
  db_.reset(db);
  return Status::Ok();
}

nfa::StateSpill* SpillStore::worker(size_t i) { return workers_[i].get(); }

uint64_t SpillStore::disk_bytes() const {
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory_, ec)) {
    if (entry.is_regular_file(ec)) bytes += entry.file_size(ec);
  }
  return bytes;
}

}  // namespace vigil::state
