#include "state/checkpoint_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include "common/byte_codec.h"
#include "common/crc32c.h"
#include "common/files.h"
#include "common/time_util.h"

namespace vigil::state {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMetaFile = "CHECKPOINT";
constexpr std::string_view kMetaMagic = "VIGILCKP";
// Format 2 added input_progress; format 1 (without it) is still read.
constexpr uint8_t kMetaFormat = 2;
constexpr std::string_view kTmpSuffix = ".tmp";
constexpr std::string_view kBadSuffix = ".bad";

// RocksDB's errors, converted at this one edge.
Status FromRocks(const rocksdb::Status& s, std::string_view doing) {
  if (s.ok()) return Status::Ok();
  std::string message = std::string(doing) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(message));
  if (s.IsNotFound()) return Status::NotFound(std::move(message));
  return Status::IoError(std::move(message));
}

uint32_t Checksum(std::string_view bytes) { return Crc32c(bytes); }

// Key layout: 'k', the pattern id's length, the id, the key's identity. All keys of a pattern
// share the prefix before the identity.
std::string PatternPrefix(std::string_view pattern_id) {
  std::string key(1, 'k');
  PutBytes(&key, pattern_id);
  return key;
}

// The key into `key`, whose buffer is reused.
void SetKey(std::string* key, std::string_view pattern_id, std::string_view identity) {
  key->assign(1, 'k');
  PutBytes(key, pattern_id);
  key->append(identity);
}

// The first key after every key that starts with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}

Status WriteDurably(const std::string& path, std::string_view contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == contents.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Status::IoError("cannot write " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

void SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

rocksdb::Options DatabaseOptions() {
  rocksdb::Options options;
  options.create_if_missing = true;
  // The live database is rebuilt from a checkpoint after a crash, never read as it was left,
  // so its writes need no log of their own.
  options.avoid_flush_during_shutdown = true;
  options.max_open_files = 256;
  return options;
}

// Appends the puts and deletes of `from` to `to`, but those of keys starting with `skipped`
// (if not empty). Errors: an entry of another kind.
rocksdb::Status AppendBatch(const rocksdb::WriteBatch& from, rocksdb::WriteBatch* to,
                            std::string_view skipped = {}) {
  class Append : public rocksdb::WriteBatch::Handler {
   public:
    Append(std::string_view skipped, rocksdb::WriteBatch* to)
        : skipped_(skipped.data(), skipped.size()), to_(to) {}
    rocksdb::Status PutCF(uint32_t, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
      return Skipped(key) ? rocksdb::Status::OK() : to_->Put(key, value);
    }
    rocksdb::Status DeleteCF(uint32_t, const rocksdb::Slice& key) override {
      return Skipped(key) ? rocksdb::Status::OK() : to_->Delete(key);
    }

   private:
    bool Skipped(const rocksdb::Slice& key) const { return !skipped_.empty() && key.starts_with(skipped_); }
    rocksdb::Slice skipped_;
    rocksdb::WriteBatch* to_;
  } append(skipped, to);
  return from.Iterate(&append);
}

}  // namespace

// One worker's changes for a checkpoint: the drops apply first, then the batch, in order.
struct CheckpointStore::Changes {
  rocksdb::WriteBatch batch;
  std::vector<std::string> dropped;
  bool dropped_all = false;

  // A batch's memory up to `kept_bytes` is kept, so that filling it again does not fault its
  // pages in again; a larger one's is let go.
  void Clear(size_t kept_bytes) {
    if (batch.GetDataSize() > kept_bytes) batch = rocksdb::WriteBatch();
    batch.Clear();
    dropped.clear();
    dropped_all = false;
  }
};

// Collects one worker's changes for the next checkpoint, written ahead or at its barrier.
class CheckpointStore::BatchWriter : public nfa::StateWriter {
 public:
  void DropPattern(std::string_view id) override {
    changes.dropped.emplace_back(id);
    // The drops apply before the batch, so keys of the pattern written ahead of the drop go now.
    if (changes.batch.Count() > 0) RemoveKeysUnder(PatternPrefix(id));
  }
  void DropAll() override {
    changes.Clear(SIZE_MAX);
    changes.dropped_all = true;
  }
  void PutKey(std::string_view pattern_id, std::string_view identity, std::string_view state) override {
    changes.batch.Put(Key(pattern_id, identity), rocksdb::Slice(state.data(), state.size()));
  }
  void DeleteKey(std::string_view pattern_id, std::string_view identity) override {
    changes.batch.Delete(Key(pattern_id, identity));
  }

  Changes changes;

 private:
  rocksdb::Slice Key(std::string_view pattern_id, std::string_view identity) {
    SetKey(&key_, pattern_id, identity);
    return key_;
  }
  void RemoveKeysUnder(const std::string& prefix) {
    rocksdb::WriteBatch kept;
    AppendBatch(changes.batch, &kept, prefix).PermitUncheckedError();  // it holds only puts and deletes
    changes.batch = std::move(kept);
  }
  std::string key_;
};

std::string EncodeCheckpointMeta(const CheckpointMeta& meta) {
  std::string body;
  PutVarint(&body, meta.id);
  PutSignedVarint(&body, meta.created_ms);
  PutSignedVarint(&body, meta.duration_ms);
  PutVarint(&body, meta.input_position);
  PutBytes(&body, meta.engine_progress);
  PutBytes(&body, meta.output_position);
  PutBytes(&body, meta.input_progress);
  PutVarint(&body, meta.patterns.size());
  for (const SavedPattern& p : meta.patterns) {
    PutBytes(&body, p.id);
    PutVarint(&body, p.version);
    PutBytes(&body, p.source);
  }
  PutVarint(&body, meta.bytes);
  PutVarint(&body, meta.new_bytes);
  PutVarint(&body, meta.keys_written);
  std::string out(kMetaMagic);
  out.push_back(static_cast<char>(kMetaFormat));
  PutBytes(&out, body);
  PutVarint(&out, Checksum(body));
  return out;
}

Result<CheckpointMeta> DecodeCheckpointMeta(std::string_view bytes) {
  if (!bytes.starts_with(kMetaMagic) || bytes.size() < kMetaMagic.size() + 1) {
    return Status::Corruption("not a checkpoint meta file");
  }
  const auto format = static_cast<uint8_t>(bytes[kMetaMagic.size()]);
  if (format != kMetaFormat && format != 1) {
    return Status::Corruption("checkpoint meta format " + std::to_string(format) + " is unknown");
  }
  ByteReader outer(bytes.substr(kMetaMagic.size() + 1));
  const std::string_view body = outer.Bytes();
  const uint64_t checksum = outer.Varint();
  if (!outer.done()) return Status::Corruption("checkpoint meta is truncated");
  if (checksum != Checksum(body)) return Status::Corruption("checkpoint meta fails its checksum");
  ByteReader in(body);
  CheckpointMeta meta;
  meta.id = in.Varint();
  meta.created_ms = in.SignedVarint();
  meta.duration_ms = in.SignedVarint();
  meta.input_position = in.Varint();
  meta.engine_progress = in.Bytes();
  meta.output_position = in.Bytes();
  if (format >= 2) meta.input_progress = in.Bytes();
  meta.patterns.resize(in.Below(body.size()));
  for (SavedPattern& p : meta.patterns) {
    p.id = in.Bytes();
    p.version = in.Varint();
    p.source = in.Bytes();
  }
  meta.bytes = in.Varint();
  meta.new_bytes = in.Varint();
  meta.keys_written = in.Varint();
  if (!in.done()) return Status::Corruption("checkpoint meta is malformed");
  return meta;
}

CheckpointStore::CheckpointStore(Options options) : options_(std::move(options)) {}

std::string CheckpointStore::KeyOf(std::string_view pattern_id, std::string_view identity) {
  std::string key;
  SetKey(&key, pattern_id, identity);
  return key;
}

Result<std::string> CheckpointStore::GetLive(std::string_view pattern_id, std::string_view identity) const {
  std::string value;
  if (Status s = FromRocks(live_->Get(rocksdb::ReadOptions(), KeyOf(pattern_id, identity), &value),
                           "reading a key's state");
      !s.ok()) {
    return s;
  }
  return value;
}
CheckpointStore::~CheckpointStore() = default;
CheckpointStore::Reader::~Reader() = default;

std::string CheckpointStore::PathOf(uint64_t id) const {
  char name[21];
  std::snprintf(name, sizeof name, "%020llu", static_cast<unsigned long long>(id));
  return (fs::path(options_.directory) / "checkpoints" / name).string();
}

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(Options options) {
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(std::move(options)));
  const fs::path checkpoints = fs::path(store->options_.directory) / "checkpoints";
  std::error_code ec;
  fs::create_directories(checkpoints, ec);
  if (ec) return Status::IoError("cannot create " + checkpoints.string() + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(checkpoints, ec)) {
    const std::string name = entry.path().filename().string();
    uint64_t id = 0;
    const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (err != std::errc()) continue;
    if (std::string_view(end, name.data() + name.size()) == kTmpSuffix) {
      fs::remove_all(entry.path(), ec);
      continue;
    }
    store->last_id_ = std::max(store->last_id_, id);
  }
  return store;
}

std::vector<CheckpointStore::Listed> CheckpointStore::Candidates() const {
  std::vector<uint64_t> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(options_.directory) / "checkpoints", ec)) {
    const std::string name = entry.path().filename().string();
    uint64_t id = 0;
    const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (err == std::errc() && end == name.data() + name.size()) ids.push_back(id);
  }
  std::sort(ids.rbegin(), ids.rend());
  std::vector<Listed> out;
  for (const uint64_t id : ids) {
    const std::string path = (fs::path(PathOf(id)) / kMetaFile).string();
    Result<std::string> bytes = ReadFile(path);
    Result<CheckpointMeta> meta = bytes.ok() ? DecodeCheckpointMeta(*bytes) : Result<CheckpointMeta>(bytes.status());
    if (meta.ok() && meta->id != id) meta = Status::Corruption("meta file names checkpoint " + std::to_string(meta->id));
    if (!meta.ok()) meta = Status(Status::Corruption(path + ": " + meta.status().message()));
    out.push_back({id, std::move(meta)});
  }
  return out;
}

Result<std::unique_ptr<CheckpointStore::Reader>> CheckpointStore::OpenReader(uint64_t id) const {
  rocksdb::DB* db = nullptr;
  rocksdb::Options options = DatabaseOptions();
  options.create_if_missing = false;
  options.paranoid_checks = true;
  if (Status s = FromRocks(rocksdb::DB::OpenForReadOnly(options, PathOf(id), &db), "opening checkpoint " + PathOf(id));
      !s.ok()) {
    return s;
  }
  auto reader = std::unique_ptr<Reader>(new Reader());
  reader->db_.reset(db);
  if (Status s = FromRocks(db->VerifyChecksum(), "checking checkpoint " + PathOf(id)); !s.ok()) return s;
  return reader;
}

Status CheckpointStore::Reader::Scan(const engine::ShardedMatcher::KeyVisitor& visit) const {
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  read.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    ByteReader in(std::string_view(key.data(), key.size()).substr(1));
    const std::string_view pattern_id = in.Bytes();
    if (key.empty() || key[0] != 'k' || !in.ok()) {
      return Status::Corruption("checkpoint holds a key of unknown form");
    }
    const size_t identity_at = static_cast<size_t>(pattern_id.data() + pattern_id.size() - key.data());
    const rocksdb::Slice value = it->value();
    if (Status s = visit(pattern_id, std::string_view(key.data() + identity_at, key.size() - identity_at),
                         std::string_view(value.data(), value.size()));
        !s.ok()) {
      return s;
    }
  }
  return FromRocks(it->status(), "reading a checkpoint");
}

Status CheckpointStore::OpenLive() {
  rocksdb::DB* db = nullptr;
  const std::string live = (fs::path(options_.directory) / "live").string();
  if (Status s = FromRocks(rocksdb::DB::Open(DatabaseOptions(), live, &db), "opening " + live); !s.ok()) return s;
  live_.reset(db);
  return Status::Ok();
}

// A checkpoint that did not load is kept aside under <id>.bad for a look, never loaded again.
void CheckpointStore::SetAside(uint64_t id) const {
  std::error_code ec;
  fs::rename(PathOf(id), PathOf(id) + std::string(kBadSuffix), ec);
  if (ec) fs::remove_all(PathOf(id), ec);
}

Status CheckpointStore::StartEmpty() {
  live_.reset();
  std::error_code ec;
  fs::remove_all(fs::path(options_.directory) / "live", ec);
  for (const Listed& c : Candidates()) SetAside(c.id);
  kept_.clear();
  return OpenLive();
}

Status CheckpointStore::Adopt(uint64_t id) {
  live_.reset();
  const fs::path live = fs::path(options_.directory) / "live";
  std::error_code ec;
  fs::remove_all(live, ec);
  fs::create_directories(live, ec);
  if (ec) return Status::IoError("cannot create " + live.string() + ": " + ec.message());
  // SST files never change once written: link them. The rest (MANIFEST, CURRENT, OPTIONS)
  // the live database will write to, so it gets copies.
  for (const auto& entry : fs::directory_iterator(PathOf(id), ec)) {
    const fs::path& from = entry.path();
    if (from.filename() == kMetaFile) continue;
    const fs::path to = live / from.filename();
    if (from.extension() == ".sst") {
      fs::create_hard_link(from, to, ec);
    } else {
      fs::copy_file(from, to, ec);
    }
    if (ec) return Status::IoError("cannot copy " + from.string() + ": " + ec.message());
  }
  kept_.clear();
  for (Listed& c : Candidates()) {
    if (c.id > id) {
      SetAside(c.id);
    } else if (c.meta.ok()) {
      kept_.push_back(std::move(*c.meta));
    }
  }
  return OpenLive();
}

std::vector<nfa::StateWriter*> CheckpointStore::Writers(size_t workers) {
  if (writers_.size() != workers) {
    writers_.clear();
    for (size_t i = 0; i < workers; ++i) writers_.push_back(std::make_unique<BatchWriter>());
  }
  std::vector<nfa::StateWriter*> out;
  for (const auto& w : writers_) out.push_back(w.get());
  return out;
}

size_t CheckpointStore::KeptBatchBytes() const {
  // Two batches per worker (being filled, being written); the total bounded whatever the
  // worker count. Counted from sealed_, which only Seal and Write touch (never at once).
  constexpr size_t kKeptBytes = size_t{128} << 20;
  return kKeptBytes / (2 * std::max<size_t>(1, sealed_.size()));
}

void CheckpointStore::Seal() {
  sealed_.resize(writers_.size());
  for (size_t i = 0; i < writers_.size(); ++i) {
    // The sealed changes written last time lend their memory to the next ones.
    std::swap(writers_[i]->changes, sealed_[i]);
    writers_[i]->changes.Clear(KeptBatchBytes());
  }
}

Status CheckpointStore::Validate(const std::string& dir, uint64_t previous_id, uint64_t* bytes,
                                 uint64_t* new_bytes) const {
  std::set<std::string> previous;
  std::error_code ec;
  if (previous_id > 0) {
    for (const auto& entry : fs::directory_iterator(PathOf(previous_id), ec)) {
      previous.insert(entry.path().filename().string());
    }
  }
  *bytes = *new_bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const uint64_t size = entry.file_size(ec);
    *bytes += size;
    const std::string name = entry.path().filename().string();
    if (previous.contains(name) && entry.path().extension() == ".sst") continue;
    *new_bytes += size;
    if (entry.path().extension() != ".sst") continue;
    // Files the previous checkpoint holds were checked when it was made.
    rocksdb::Options options = DatabaseOptions();
    rocksdb::SstFileReader reader(options);
    if (Status s = FromRocks(reader.Open(entry.path().string()), "checking " + entry.path().string()); !s.ok()) return s;
    if (Status s = FromRocks(reader.VerifyChecksum(), "checking " + entry.path().string()); !s.ok()) return s;
  }
  if (ec) return Status::IoError("cannot list " + dir + ": " + ec.message());
  return Status::Ok();
}

Result<CheckpointMeta> CheckpointStore::Commit(CheckpointMeta meta, int64_t started_steady_ms) {
  Seal();
  Result<CheckpointMeta> written = Write(std::move(meta), started_steady_ms);
  if (!written.ok()) return written;
  if (Status s = Keep(*written); !s.ok()) return s;
  return written;
}

Result<CheckpointMeta> CheckpointStore::Write(CheckpointMeta meta, int64_t started_steady_ms) {
  rocksdb::WriteOptions write;
  write.disableWAL = true;
  // The drops first, then every worker's keys. The live database is read meanwhile, for keys
  // out of memory that no checkpoint since the one restored has changed (SpillStore), and
  // only those may be read between two of these writes: every worker's batch can go as it
  // is, without copying them all into one. Except after a failed checkpoint: this one then
  // drops every key and writes them all again, those included, so it is one batch.
  rocksdb::WriteBatch drops;
  std::set<std::string> dropped;
  bool dropped_all = false;
  for (const Changes& c : sealed_) {
    dropped.insert(c.dropped.begin(), c.dropped.end());
    dropped_all = dropped_all || c.dropped_all;
  }
  if (dropped_all) drops.DeleteRange("k", PrefixEnd("k"));
  for (const std::string& id : dropped) {
    const std::string prefix = PatternPrefix(id);
    drops.DeleteRange(prefix, PrefixEnd(prefix));
  }
  meta.keys_written = 0;
  for (const Changes& c : sealed_) meta.keys_written += static_cast<uint64_t>(c.batch.Count());
  if (dropped_all) {
    for (const Changes& c : sealed_) {
      if (Status s = FromRocks(AppendBatch(c.batch, &drops), "collecting state"); !s.ok()) return s;
    }
  }
  if (drops.Count() > 0) {
    if (Status s = FromRocks(live_->Write(write, &drops), "writing state"); !s.ok()) return s;
  }
  if (!dropped_all) {
    for (Changes& c : sealed_) {
      if (Status s = FromRocks(live_->Write(write, &c.batch), "writing state"); !s.ok()) return s;
    }
  }
  for (Changes& c : sealed_) c.Clear(KeptBatchBytes());

  meta.id = last_id_ + 1;
  const std::string final_dir = PathOf(meta.id);
  const std::string tmp_dir = final_dir + std::string(kTmpSuffix);
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  rocksdb::Checkpoint* raw = nullptr;
  if (Status s = FromRocks(rocksdb::Checkpoint::Create(live_.get(), &raw), "checkpoint"); !s.ok()) return s;
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // 0: always flush first, so the checkpoint is SST files only (the live database has no log).
  if (Status s = FromRocks(checkpoint->CreateCheckpoint(tmp_dir, 0), "creating " + tmp_dir); !s.ok()) {
    return s;
  }
  const uint64_t previous_id = kept_.empty() ? 0 : kept_.front().id;
  if (Status s = Validate(tmp_dir, previous_id, &meta.bytes, &meta.new_bytes); !s.ok()) {
    fs::remove_all(tmp_dir, ec);
    return s;
  }
  meta.duration_ms = SteadyClockMs() - started_steady_ms;
  if (Status s = WriteDurably((fs::path(tmp_dir) / kMetaFile).string(), EncodeCheckpointMeta(meta)); !s.ok()) {
    fs::remove_all(tmp_dir, ec);
    return s;
  }
  SyncDirectory(tmp_dir);
  return meta;
}

Status CheckpointStore::Keep(const CheckpointMeta& meta) {
  const std::string final_dir = PathOf(meta.id);
  std::error_code ec;
  fs::rename(final_dir + std::string(kTmpSuffix), final_dir, ec);
  if (ec) return Status::IoError("cannot rename " + final_dir + std::string(kTmpSuffix) + ": " + ec.message());
  SyncDirectory(fs::path(final_dir).parent_path().string());
  last_id_ = meta.id;
  kept_.insert(kept_.begin(), meta);
  Prune();
  return Status::Ok();
}

void CheckpointStore::Prune() {
  std::error_code ec;
  while (kept_.size() > std::max<size_t>(options_.retain, 1)) {
    fs::remove_all(PathOf(kept_.back().id), ec);
    kept_.pop_back();
  }
}

uint64_t CheckpointStore::disk_bytes() const {
  // Hard links share their blocks: count each file (inode) once.
  std::set<std::pair<uint64_t, uint64_t>> seen;
  uint64_t bytes = 0;
  // A checkpoint being written (Write on another thread) removes directories and RocksDB
  // deletes files: what vanishes while listed is skipped, never thrown.
  std::error_code ec;
  for (fs::recursive_directory_iterator it(options_.directory, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec) || ::stat(it->path().c_str(), &st) != 0) continue;
    if (seen.emplace(st.st_dev, st.st_ino).second) bytes += static_cast<uint64_t>(st.st_size);
  }
  return bytes;
}

}  // namespace vigil::state
