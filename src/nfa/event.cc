#include "nfa/event.h"

#include <algorithm>
#include <array>
#include <new>

namespace vigil::nfa {

Event::ParseBuffers& Event::BuffersForParsing() {
  if (!buffers_) buffers_ = std::make_unique<ParseBuffers>();
  return *buffers_;
}

void Event::Clear() {
  if (buffers_) {
    buffers_->slots.clear();
    buffers_->strings.clear();
    buffers_->items.clear();
  }
  raw_ = {};
  slots_ = nullptr;
  slot_count_ = 0;
  time_ms_ = 0;
  seq_ = 0;
  line_ = 0;
}

std::span<const Value> Event::items() const {
  if (buffers_) return buffers_->items;
  return {slots_ + slot_count_, item_count_};
}

std::string_view Event::strings() const {
  if (buffers_) return buffers_->strings;
  return {reinterpret_cast<const char*>(slots_ + slot_count_ + item_count_), strings_size_};
}

// Recycled blocks of this thread, by size, in proportion to the events retained: windows
// closing and held-back events released free many at once, which the events retained next
// would allocate again. As fewer are retained, the pool shrinks with them, so a burst does not
// stay allocated. (Pooled blocks are not counted in RetainedBytesOnThisThread.)
class EventPool {
 public:
  static constexpr size_t kMinPooled = 4096;
  static constexpr size_t kRetainedPerPooled = 4;
  // Blocks are multiples of this; each multiple up to kPooledSizes has its own free list, so a
  // block is reused only by an event of its size (a larger one would be counted, and kept, for
  // a smaller event). Larger blocks, rare events of over 4 KiB, are not pooled.
  static constexpr size_t kBlockGrain = 64;
  static constexpr size_t kPooledSizes = 64;

  ~EventPool() {
    for (std::vector<Event*>& blocks : free_) {
      for (Event* e : blocks) Free(e);
    }
  }
  // A block of at least `bytes`, its Event constructed.
  Event* Take(size_t bytes) {
    const size_t grains = (bytes + kBlockGrain - 1) / kBlockGrain;
    if (grains < kPooledSizes && !free_[grains].empty()) {
      Event* e = free_[grains].back();
      free_[grains].pop_back();
      --pooled_;
      return e;
    }
    const size_t block_bytes = grains * kBlockGrain;
    Event* e = new (::operator new(block_bytes)) Event();
    e->block_bytes_ = static_cast<uint32_t>(block_bytes);
    return e;
  }
  void Give(Event* e, int64_t retained_events) {
    const auto room = std::max<size_t>(kMinPooled, static_cast<size_t>(std::max<int64_t>(0, retained_events)) /
                                                       kRetainedPerPooled);
    const size_t grains = e->block_bytes_ / kBlockGrain;
    if (grains < kPooledSizes && pooled_ < room) {
      free_[grains].push_back(e);
      ++pooled_;
      return;
    }
    Free(e);
    for (std::vector<Event*>& blocks : free_) {
      for (; pooled_ > room && !blocks.empty(); --pooled_, blocks.pop_back()) Free(blocks.back());
    }
  }

 private:
  static void Free(Event* e) {
    e->~Event();
    ::operator delete(e);
  }

  std::array<std::vector<Event*>, kPooledSizes> free_;
  size_t pooled_ = 0;
};

namespace {

thread_local EventPool pool;
thread_local int64_t retained_bytes = 0;
// Signed, as retained_bytes: an engine's events may be released on another thread than the one
// that retained them (a Matcher destroyed elsewhere), which takes this thread's counts below zero.
thread_local int64_t retained_events = 0;

// Where a view into `from` (its text, strings or items) lies in the copy.
struct Rebase {
  std::string_view from_raw, from_strings;
  std::span<const Value> from_items;
  const char* raw;
  const char* strings;
  const Value* items;

  Value operator()(Value v) const {
    if (v.kind == Value::Kind::kString) {
      const char* p = v.str.data;
      if (p >= from_raw.data() && p <= from_raw.data() + from_raw.size()) {
        v.str.data = raw + (p - from_raw.data());
      } else if (p >= from_strings.data() && p <= from_strings.data() + from_strings.size()) {
        v.str.data = strings + (p - from_strings.data());
      }
    } else if (v.kind == Value::Kind::kList) {
      v.list.data = items + (v.list.data - from_items.data());
    }
    return v;
  }
};

}  // namespace

uint64_t Event::RetainedBytesOnThisThread() { return static_cast<uint64_t>(std::max<int64_t>(0, retained_bytes)); }

void Event::Recycle(Event* e) {
  retained_bytes -= e->block_bytes_;
  --retained_events;
  pool.Give(e, retained_events);
}

EventRef Event::Retain() const {
  static_assert(sizeof(Event) % alignof(Value) == 0, "the values follow the header in its block");
  const std::span<const Value> from_items = items();
  const std::string_view from_strings = strings();
  const size_t values = slot_count_ + from_items.size();
  Event* copy = pool.Take(sizeof(Event) + values * sizeof(Value) + from_strings.size() + raw_.size());
  auto* slots = reinterpret_cast<Value*>(copy + 1);
  Value* items = slots + slot_count_;
  auto* strings = reinterpret_cast<char*>(slots + values);
  char* raw = strings + from_strings.size();
  std::copy(from_strings.begin(), from_strings.end(), strings);
  std::copy(raw_.begin(), raw_.end(), raw);
  const Rebase rebase{raw_, from_strings, from_items, raw, strings, items};
  std::transform(slots_, slots_ + slot_count_, slots, rebase);
  std::transform(from_items.begin(), from_items.end(), items, rebase);

  copy->raw_ = std::string_view(raw, raw_.size());
  copy->slots_ = slots;
  copy->slot_count_ = slot_count_;
  copy->item_count_ = static_cast<uint32_t>(from_items.size());
  copy->strings_size_ = static_cast<uint32_t>(from_strings.size());
  copy->time_ms_ = time_ms_;
  copy->seq_ = seq_;
  copy->line_ = line_;
  retained_bytes += copy->block_bytes_;
  ++retained_events;
  return EventRef(copy);
}

}  // namespace vigil::nfa
