#pragma once
// KeyIndex: key bytes -> record number, for the Matcher's per-key state.
//
// An open-addressing table with linear probing over 16-byte slots (full hash, record), so a
// lookup usually touches one cache line of the table plus the record it finds, and inserting
// or erasing a key allocates nothing (a node-based map allocates and frees a node per key,
// and keys come and go with every run that starts and times out). The keys themselves live in
// the caller's records; `key_of(record)` returns a record's key bytes. Deletion shifts later
// entries back, so there are no tombstones and probe sequences stay short.
// Not thread-safe.

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace vigil::nfa {

class KeyIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  static uint64_t Hash(std::string_view key) {
    // std::hash is a good byte hash; the final mix spreads it into the low bits used for slots.
    uint64_t h = std::hash<std::string_view>()(key);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
  }

  template <typename KeyOf>
  uint32_t Find(uint64_t hash, std::string_view key, const KeyOf& key_of) const {
    if (slots_.empty()) return kNone;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.record == kNone) return kNone;
      if (s.hash == hash && key_of(s.record) == key) return s.record;
    }
  }

  // Starts loading the slot where `hash` would be found (a hint; no effect on contents).
  void Prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
  }

  // The first record stored under `hash`, without comparing keys: the record Find() most
  // likely returns, for prefetching it. kNone when there is none.
  uint32_t Peek(uint64_t hash) const {
    if (slots_.empty()) return kNone;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].record == kNone || slots_[i].hash == hash) return slots_[i].record;
    }
  }

  // REQUIRES: no record with this key is in the index.
  void Insert(uint64_t hash, uint32_t record) {
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    Place(hash, record);
    ++size_;
  }

  // REQUIRES: `record` is in the index under `hash`.
  void Erase(uint64_t hash, uint32_t record) {
    size_t i = hash & mask_;
    while (slots_[i].record != record) i = (i + 1) & mask_;
    for (size_t j = i;;) {
      j = (j + 1) & mask_;
      if (slots_[j].record == kNone) break;
      const size_t ideal = slots_[j].hash & mask_;
      // Entry j may move back to i unless its ideal slot lies cyclically in (i, j].
      const bool stays = i <= j ? (i < ideal && ideal <= j) : (i < ideal || ideal <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i] = Slot{};
    --size_;
  }

  size_t size() const { return size_; }
  void Clear() {
    slots_.clear();
    mask_ = 0;
    size_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t record = kNone;
  };

  void Place(uint64_t hash, uint32_t record) {
    size_t i = hash & mask_;
    while (slots_[i].record != kNone) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, record};
  }

  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.record != kNone) Place(s.hash, s.record);
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace vigil::nfa
