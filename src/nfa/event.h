#pragma once
// Event: one input event, parsed once, with the bytes it arrived as.
//
// An Event holds its original JSON text (so a match reproduces it byte for byte), its event
// time, its position in the processing order (`seq`, Flink's EventId: unique and increasing in
// event-time order within a stream), and the values of the schema's fields (see
// field_schema.h). The parser fills one reusable scratch Event per input line; only an event
// that a partial match takes or that must wait for the watermark is copied into a
// reference-counted heap Event (Retain), so events nobody keeps cost no allocation; retained
// events are recycled through a per-thread pool, so steady-state matching allocates nothing.
// Not thread-safe: an Event belongs to one matching thread.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/cache_lines.h"
#include "nfa/value.h"

namespace vigil::nfa {

class EventParser;
class EventRef;

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  std::string_view raw() const { return raw_; }
  int64_t time_ms() const { return time_ms_; }
  uint64_t seq() const { return seq_; }
  void set_seq(uint64_t seq) { seq_ = seq; }
  // 1-based input line (or record index) for error reports; 0 when unknown.
  uint64_t line() const { return line_; }
  void set_line(uint64_t line) { line_ = line; }

  // The value of the schema field at `slot`; Missing when absent or unknown to this event.
  const Value& field(int slot) const {
    static constexpr Value kMissing;
    return static_cast<uint32_t>(slot) < slot_count_ ? slots_[slot] : kMissing;
  }

  // Starts loading the event's field values and text into the cache (a hint; for an event
  // written on another core, whose first reads would each miss).
  void Prefetch() const {
    const char* values = reinterpret_cast<const char*>(slots_);
    const size_t value_bytes = slot_count_ * sizeof(Value);
    for (size_t offset = 0; offset < value_bytes; offset += 64) __builtin_prefetch(values + offset);
    __builtin_prefetch(raw_.data());
  }

  // A retained event: loads its header and starts loading the next lines of its block (its
  // first values), for a pass that runs a level ahead of the reads (common/cache_lines.h).
  void LoadBlock() const {
    const char* block = reinterpret_cast<const char*>(this);
    LoadLine(block);
    for (size_t offset = 64; offset < kPrefetchedBlockBytes; offset += 64) __builtin_prefetch(block + offset);
  }

  // A heap copy of this event that owns all its bytes, with one reference held. The copy is
  // one block (this header, then its values, strings and text), so reading a field of a
  // retained event touches neighbouring cache lines rather than three separate allocations.
  EventRef Retain() const;
  // The memory of the retained events this thread holds (events kept by partial matches or
  // waiting for the watermark), in bytes.
  static uint64_t RetainedBytesOnThisThread();

 private:
  static constexpr size_t kPrefetchedBlockBytes = 256;

  friend class EventParser;
  friend class EventRef;
  friend class EventPool;

  // What the parser fills an event from, kept from one event to the next so parsing does not
  // allocate.
  struct ParseBuffers {
    std::vector<Value> slots;
    std::string strings;       // unescaped strings; reserved up front so views stay valid
    std::vector<Value> items;  // elements of list-valued fields
  };
  ParseBuffers& BuffersForParsing();
  void Clear();
  // Returns a retained event whose last reference is gone to this thread's pool, so the next
  // Retain() reuses its block instead of allocating.
  static void Recycle(Event* e);
  // The list elements and unescaped strings the values point into (besides raw_).
  std::span<const Value> items() const;
  std::string_view strings() const;

  std::string_view raw_;
  const Value* slots_ = nullptr;
  uint32_t slot_count_ = 0;
  uint32_t refs_ = 0;
  int64_t time_ms_ = 0;
  uint64_t seq_ = 0;
  uint64_t line_ = 0;
  // A retained event: the bytes of its block, and how many of its items and string bytes follow
  // its values there.
  uint32_t block_bytes_ = 0;
  uint32_t item_count_ = 0;
  uint32_t strings_size_ = 0;
  std::unique_ptr<ParseBuffers> buffers_;  // an event the parser fills; none when retained
};

// An intrusive, non-atomic reference to a retained Event (one matching thread owns it).
class EventRef {
 public:
  EventRef() = default;
  explicit EventRef(Event* e) : e_(e) {
    if (e_) ++e_->refs_;
  }
  EventRef(const EventRef& o) : EventRef(o.e_) {}
  EventRef(EventRef&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  EventRef& operator=(EventRef o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  ~EventRef() {
    if (e_ && --e_->refs_ == 0) Event::Recycle(e_);
  }

  Event* get() const { return e_; }
  Event* operator->() const { return e_; }
  Event& operator*() const { return *e_; }
  explicit operator bool() const { return e_ != nullptr; }

 private:
  Event* e_ = nullptr;
};

}  // namespace vigil::nfa
