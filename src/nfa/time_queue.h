#pragma once
// TimeQueue: items by event time, for events held back until the watermark passes them.
//
// Nothing is pushed earlier than the last item taken out (an event below the watermark is late,
// a window's deadline is after its first event, and the watermark only grows), which allows a radix heap instead of a binary one: an
// item goes to the bucket named by the highest bit in which its time differs from the last
// time taken, buckets are plain vectors appended to and read in order, and an item moves to a
// lower bucket only when everything before it has been taken, a few times over its life
// (log2 of how far ahead of the watermark it was). A binary heap of the hundreds of thousands
// of events a few seconds of hold-back keep touches a random cache line at each of its ~18
// levels on every push and pop.
//
// Items of equal time come out in the order they were pushed.
// Not thread-safe.

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace vigil::nfa {

template <typename T>
class TimeQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

  // An item earlier than one already taken out (an overdue timer) comes out with the next
  // items taken, whatever their time.
  void Push(int64_t time_ms, T item) {
    Append(KeyOf(time_ms), std::move(item));
    ++size_;
  }

  // Moves items of time <= up_to_ms into `out`, earliest first (overdue ones before all), until
  // `out` holds `max`.
  void TakeUpTo(int64_t up_to_ms, size_t max, std::vector<T>* out) {
    const uint64_t limit = KeyOf(up_to_ms);
    std::vector<Entry>& current = buckets_[0];  // all of the last time taken
    while (out->size() < max) {
      if (next_ < current.size()) {
        if (current[next_].key > limit) return;
        out->push_back(std::move(current[next_++].item));
        --size_;
        continue;
      }
      current.clear();
      next_ = 0;
      if (filled_ == 0) return;
      const size_t b = static_cast<size_t>(std::countr_zero(filled_)) + 1;
      if (earliest_[b] > limit) return;
      // Everything of bucket b differs from the new last time below bit b-1: lower buckets.
      last_ = earliest_[b];
      std::vector<Entry>& lowest = buckets_[b];
      filled_ &= ~(uint64_t{1} << (b - 1));
      earliest_[b] = UINT64_MAX;
      for (Entry& e : lowest) Append(e.key, std::move(e.item));
      lowest.clear();
    }
  }

  // Calls visit(time_ms, item) for every item, in no particular order.
  template <typename Visit>
  void ForEach(Visit&& visit) const {
    for (size_t b = 0; b < kBuckets; ++b) {
      for (size_t i = b == 0 ? next_ : 0; i < buckets_[b].size(); ++i) {
        visit(TimeOf(buckets_[b][i].key), buckets_[b][i].item);
      }
    }
  }

 private:
  struct Entry {
    uint64_t key;  // KeyOf(time)
    T item;
  };
  static constexpr size_t kBuckets = 65;
  static constexpr std::array<uint64_t, kBuckets> MaxKeys() {
    std::array<uint64_t, kBuckets> keys{};
    keys.fill(UINT64_MAX);
    return keys;
  }

  // Order-preserving: signed times as unsigned keys.
  static uint64_t KeyOf(int64_t time_ms) { return static_cast<uint64_t>(time_ms) ^ (uint64_t{1} << 63); }
  static int64_t TimeOf(uint64_t key) { return static_cast<int64_t>(key ^ (uint64_t{1} << 63)); }
  size_t BucketOf(uint64_t key) const {
    return key <= last_ ? 0 : static_cast<size_t>(64 - std::countl_zero(key ^ last_));
  }
  void Append(uint64_t key, T item) {
    const size_t b = BucketOf(key);
    buckets_[b].push_back({key, std::move(item)});
    if (b == 0) return;
    filled_ |= uint64_t{1} << (b - 1);
    earliest_[b] = std::min(earliest_[b], key);
  }

  std::array<std::vector<Entry>, kBuckets> buckets_;
  // Buckets 1..64: which hold items (bit b-1), and each one's earliest key, so that a take
  // with nothing due costs no scan.
  uint64_t filled_ = 0;
  std::array<uint64_t, kBuckets> earliest_ = MaxKeys();
  uint64_t last_ = 0;  // the key of the last time taken out (the lowest key before any)
  size_t next_ = 0;    // buckets_[0]'s next item to take
  size_t size_ = 0;
};

}  // namespace vigil::nfa
