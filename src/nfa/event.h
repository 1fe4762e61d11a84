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
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
    return static_cast<size_t>(slot) < slots_.size() ? slots_[slot] : kMissing;
  }

  // Starts loading the event's field values and text into the cache (a hint; for an event
  // written on another core, whose first reads would each miss).
  void Prefetch() const {
    const char* values = reinterpret_cast<const char*>(slots_.data());
    const size_t value_bytes = slots_.size() * sizeof(Value);
    for (size_t offset = 0; offset < value_bytes; offset += 64) __builtin_prefetch(values + offset);
    __builtin_prefetch(raw_.data());
  }

  // A heap copy of this event that owns all its bytes, with one reference held.
  EventRef Retain() const;
  // The memory of the retained events this thread holds (events kept by partial matches or
  // waiting for the watermark), in bytes.
  static uint64_t RetainedBytesOnThisThread();

  // Makes this event a copy of `from` whose text is `raw`: the caller's copy of from.raw(),
  // which must outlive this event. Reuses this event's buffers (no allocation once they have
  // grown), so events can be handed between threads in recycled blocks.
  void CopyFrom(const Event& from, std::string_view raw);

 private:
  friend class EventParser;
  friend class EventRef;

  void Clear();
  // Returns a retained event whose last reference is gone to this thread's pool, so the next
  // Retain() reuses its buffers instead of allocating.
  static void Recycle(Event* e);
  // Re-points views that pointed into `from`'s buffers to this event's copies.
  void RebaseFrom(const Event& from);
  Value Rebased(const Value& v, const Event& from) const;

  std::string_view raw_;
  std::string owned_raw_;        // set for retained events
  std::vector<Value> slots_;
  std::string strings_;          // unescaped strings; reserved up front so views stay valid
  std::vector<Value> items_;     // elements of list-valued fields
  int64_t time_ms_ = 0;
  uint64_t seq_ = 0;
  uint64_t line_ = 0;
  uint64_t accounted_bytes_ = 0;  // retained events: what RetainedBytesOnThisThread counts
  uint32_t refs_ = 0;
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
