// The checkpoint store: what a checkpoint holds reads back exactly, checkpoints build on each
// other (only what changed is new), the newest are kept, and adopting one makes it the base.
#include "state/checkpoint_store.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>

#include "common/byte_codec.h"
#include "common/crc32c.h"
#include "support/temp_dir.h"

TEST_SUITE_BEGIN("state");

namespace {

using vigil::Result;
using vigil::Status;
using vigil::state::CheckpointMeta;
using vigil::state::CheckpointStore;
using Keys = std::map<std::pair<std::string, std::string>, std::string>;

std::unique_ptr<CheckpointStore> OpenStore(const std::string& dir, size_t retain = 2) {
  auto store = CheckpointStore::Open({dir, retain});
  REQUIRE(store.ok());
  return std::move(*store);
}

Keys Read(const CheckpointStore& store, uint64_t id) {
  auto reader = store.OpenReader(id);
  REQUIRE(reader.ok());
  Keys keys;
  REQUIRE((*reader)->Scan([&](std::string_view p, std::string_view k, std::string_view v) {
    keys[{std::string(p), std::string(k)}] = std::string(v);
    return Status::Ok();
  }).ok());
  return keys;
}

CheckpointMeta Commit(CheckpointStore* store, uint64_t position,
                      const std::function<void(std::vector<vigil::nfa::StateWriter*>&)>& write) {
  std::vector<vigil::nfa::StateWriter*> writers = store->Writers(2);
  write(writers);
  CheckpointMeta meta;
  meta.input_position = position;
  meta.engine_progress = "progress " + std::to_string(position);
  meta.patterns = {{"p", 3, "id: p\n"}};
  Result<CheckpointMeta> committed = store->Commit(meta, 0);
  REQUIRE(committed.ok());
  return *committed;
}

}  // namespace

TEST_CASE("Checkpoint store: a format-1 meta (before input progress was recorded) still reads") {
  std::string body;
  vigil::PutVarint(&body, 3);         // id
  vigil::PutSignedVarint(&body, 10);  // created
  vigil::PutSignedVarint(&body, 2);   // duration
  vigil::PutVarint(&body, 99);        // input position
  vigil::PutBytes(&body, "progress");
  vigil::PutBytes(&body, "7:8");
  vigil::PutVarint(&body, 1);
  vigil::PutBytes(&body, "a");
  vigil::PutVarint(&body, 4);
  vigil::PutBytes(&body, "id: a");
  for (int sizes = 0; sizes < 3; ++sizes) vigil::PutVarint(&body, 5);
  std::string bytes = "VIGILCKP";
  bytes.push_back('\1');
  vigil::PutBytes(&bytes, body);
  vigil::PutVarint(&bytes, vigil::Crc32c(body));
  Result<CheckpointMeta> meta = vigil::state::DecodeCheckpointMeta(bytes);
  REQUIRE(meta.ok());
  CHECK(meta->input_position == 99);
  CHECK(meta->output_position == "7:8");
  CHECK(meta->input_progress.empty());
  REQUIRE(meta->patterns.size() == 1);
  CHECK(meta->patterns[0].version == 4);
  CHECK(meta->keys_written == 5);
}

TEST_CASE("Checkpoint store: meta survives encoding, and damage to it is refused") {
  CheckpointMeta meta;
  meta.id = 7;
  meta.created_ms = -5;
  meta.input_position = 123456789;
  meta.engine_progress = std::string("\0\1\2", 3);
  meta.output_position = "12:34";
  meta.input_progress = std::string("o\0\1", 3);
  meta.patterns = {{"a", 1, "id: a"}, {"b", 2, "id: b"}};
  const std::string bytes = vigil::state::EncodeCheckpointMeta(meta);
  Result<CheckpointMeta> back = vigil::state::DecodeCheckpointMeta(bytes);
  REQUIRE(back.ok());
  CHECK(back->id == 7);
  CHECK(back->created_ms == -5);
  CHECK(back->input_position == 123456789);
  CHECK(back->engine_progress == meta.engine_progress);
  CHECK(back->output_position == "12:34");
  CHECK(back->input_progress == meta.input_progress);
  REQUIRE(back->patterns.size() == 2);
  CHECK(back->patterns[1].source == "id: b");
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string flipped = bytes;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x20);
    CHECK_FALSE(vigil::state::DecodeCheckpointMeta(flipped).ok());
    CHECK_FALSE(vigil::state::DecodeCheckpointMeta(std::string_view(bytes).substr(0, i)).ok());
  }
}

TEST_CASE("Checkpoint store: each checkpoint holds its keys, and later ones add only what changed") {
  vigil::testing::TempDir dir;
  auto store = OpenStore(dir.path(), 3);
  REQUIRE(store->StartEmpty().ok());
  std::string big(4000, 'v');
  const CheckpointMeta first = Commit(store.get(), 10, [&](auto& writers) {
    for (int i = 0; i < 1000; ++i) writers[i % 2]->PutKey("p", "k" + std::to_string(i), big + std::to_string(i));
    writers[0]->PutKey("q", "x", "gone soon");
  });
  const CheckpointMeta second = Commit(store.get(), 20, [&](auto& writers) {
    writers[1]->PutKey("p", "k5", "changed");
    writers[0]->DeleteKey("p", "k6");
    writers[1]->DropPattern("q");
  });
  CHECK(second.id == first.id + 1);
  CHECK(first.keys_written == 1001);
  CHECK(second.keys_written == 2);
  CHECK(second.new_bytes * 20 < second.bytes);  // the tables of the first are shared
  Keys keys = Read(*store, second.id);
  CHECK(keys.size() == 999);
  CHECK(keys[{"p", "k5"}] == "changed");
  CHECK(keys.count({"p", "k6"}) == 0);
  CHECK(keys.count({"q", "x"}) == 0);
  CHECK(Read(*store, first.id).size() == 1001);  // the first is unchanged

  // Listed newest first; a new process sees the same and adopts one as its base.
  store.reset();
  store = OpenStore(dir.path(), 3);
  auto candidates = store->Candidates();
  REQUIRE(candidates.size() == 2);
  CHECK(candidates[0].id == second.id);
  REQUIRE(candidates[0].meta.ok());
  CHECK(candidates[0].meta->input_position == 20);
  CHECK(candidates[0].meta->engine_progress == "progress 20");
  REQUIRE(store->Adopt(first.id).ok());  // the newer one is dropped: it did not load
  CHECK(store->Candidates().size() == 1);
  auto value = store->GetLive("p", "k6");
  REQUIRE(value.ok());
  CHECK(*value == big + "6");
  const CheckpointMeta third = Commit(store.get(), 30, [](auto&) {});
  CHECK(third.id == second.id + 1);  // ids never repeat
}

TEST_CASE("Checkpoint store: changes written ahead of the barrier are the next checkpoint's, and a drop after them wins") {
  vigil::testing::TempDir dir;
  auto store = OpenStore(dir.path(), 3);
  REQUIRE(store->StartEmpty().ok());
  const CheckpointMeta first = Commit(store.get(), 10, [](auto& writers) { writers[0]->PutKey("p", "old", "0"); });

  // Written ahead, then the barrier: pattern p was replaced in between.
  std::vector<vigil::nfa::StateWriter*> writers = store->Writers(2);
  writers[0]->PutKey("p", "a", "ahead");
  writers[1]->PutKey("q", "b", "1");
  writers[1]->DeleteKey("q", "b");
  writers[1]->PutKey("q", "b", "2");
  writers[0]->DropPattern("p");
  writers[0]->PutKey("p", "c", "new version");
  store->Seal();
  // What comes after the barrier is for the checkpoint after.
  CHECK(store->Writers(2) == writers);
  writers[1]->PutKey("q", "later", "x");
  CheckpointMeta meta;
  meta.input_position = 20;
  Result<CheckpointMeta> second = store->Write(meta, 0);
  REQUIRE(second.ok());
  CHECK(store->checkpoints().front().id == first.id);  // written, not counted yet
  REQUIRE(store->Keep(*second).ok());
  CHECK(store->checkpoints().front().id == second->id);
  CHECK(second->keys_written == 4);
  const Keys expected = {{{"p", "c"}, "new version"}, {{"q", "b"}, "2"}};
  CHECK(Read(*store, second->id) == expected);
  CHECK(Read(*store, first.id).size() == 1);

  const CheckpointMeta third = Commit(store.get(), 30, [](auto&) {});
  CHECK(third.keys_written == 1);
  CHECK(Read(*store, third.id).at({"q", "later"}) == "x");

  // After a failed checkpoint the next drops everything and writes every key again, what was
  // written ahead before it included.
  writers[0]->PutKey("p", "c", "ahead, then dropped");
  const CheckpointMeta fourth = Commit(store.get(), 40, [](auto& w) {
    w[0]->DropAll();
    w[1]->DropAll();
    w[1]->PutKey("q", "b", "3");
  });
  CHECK(Read(*store, fourth.id) == Keys{{{"q", "b"}, "3"}});
}

TEST_CASE("Checkpoint store: a checkpoint written but not kept is gone after a crash") {
  vigil::testing::TempDir dir;
  uint64_t first_id = 0;
  {
    auto store = OpenStore(dir.path());
    REQUIRE(store->StartEmpty().ok());
    first_id = Commit(store.get(), 10, [](auto& w) { w[0]->PutKey("p", "a", "1"); }).id;
    store->Writers(2)[0]->PutKey("p", "a", "2");
    store->Seal();
    CheckpointMeta meta;
    meta.input_position = 20;
    REQUIRE(store->Write(meta, 0).ok());
  }  // the process dies before Keep: what waited for it (Kafka: its output's commit) never came
  auto store = OpenStore(dir.path());
  const std::vector<CheckpointStore::Listed> candidates = store->Candidates();
  REQUIRE(candidates.size() == 1);
  CHECK(candidates[0].id == first_id);
}

TEST_CASE("Checkpoint store: only the newest `retain` checkpoints are kept") {
  vigil::testing::TempDir dir;
  auto store = OpenStore(dir.path(), 2);
  REQUIRE(store->StartEmpty().ok());
  for (int i = 1; i <= 4; ++i) {
    Commit(store.get(), i, [i](auto& writers) { writers[0]->PutKey("p", "k", std::to_string(i)); });
  }
  CHECK(store->checkpoints().size() == 2);
  CHECK(store->checkpoints().front().input_position == 4);
  CHECK(store->Candidates().size() == 2);
  CHECK(Read(*store, store->checkpoints().back().id).at({"p", "k"}) == "3");
}
