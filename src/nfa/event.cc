#include "nfa/event.h"

#include <algorithm>

namespace vigil::nfa {

void Event::Clear() {
  slots_.clear();
  strings_.clear();
  items_.clear();
  owned_raw_.clear();
  raw_ = {};
  time_ms_ = 0;
  seq_ = 0;
  line_ = 0;
}

Value Event::Rebased(const Value& v, const Event& from) const {
  Value out = v;
  if (v.kind == Value::Kind::kString) {
    const char* p = v.str.data;
    if (p >= from.raw_.data() && p <= from.raw_.data() + from.raw_.size()) {
      out.str.data = raw_.data() + (p - from.raw_.data());
    } else if (p >= from.strings_.data() && p <= from.strings_.data() + from.strings_.size()) {
      out.str.data = strings_.data() + (p - from.strings_.data());
    }
  } else if (v.kind == Value::Kind::kList) {
    out.list.data = items_.data() + (v.list.data - from.items_.data());
  }
  return out;
}

void Event::RebaseFrom(const Event& from) {
  for (Value& v : items_) v = Rebased(v, from);
  for (Value& v : slots_) v = Rebased(v, from);
}

namespace {

// Recycled events of this thread, in proportion to the events retained: windows closing and
// held-back events released free many at once, which the events retained next would allocate
// again. As fewer are retained, the pool shrinks with them, so a burst does not stay allocated.
// (Pooled events are not counted in RetainedBytesOnThisThread.)
class EventPool {
 public:
  static constexpr size_t kMinPooled = 4096;
  static constexpr size_t kRetainedPerPooled = 4;
  ~EventPool() {
    for (Event* e : free_) delete e;
  }
  Event* Take() {
    if (free_.empty()) return nullptr;
    Event* e = free_.back();
    free_.pop_back();
    return e;
  }
  void Give(Event* e, int64_t retained_events) {
    const auto room = std::max<size_t>(kMinPooled, static_cast<size_t>(std::max<int64_t>(0, retained_events)) /
                                                       kRetainedPerPooled);
    if (free_.size() < room) return free_.push_back(e);
    delete e;
    for (; free_.size() > room; free_.pop_back()) delete free_.back();
  }

 private:
  std::vector<Event*> free_;
};

thread_local EventPool pool;
thread_local uint64_t retained_bytes = 0;
// Signed: an engine's events may be released on another thread than the one that retained
// them (a Matcher destroyed elsewhere), which takes this thread's count below zero.
thread_local int64_t retained_events = 0;

}  // namespace

uint64_t Event::RetainedBytesOnThisThread() { return retained_bytes; }

void Event::Recycle(Event* e) {
  retained_bytes -= e->accounted_bytes_;
  --retained_events;
  pool.Give(e, retained_events);
}

EventRef Event::Retain() const {
  Event* copy = pool.Take();
  if (!copy) copy = new Event();
  copy->owned_raw_.assign(raw_);
  copy->CopyFrom(*this, copy->owned_raw_);
  copy->accounted_bytes_ = sizeof(Event) + copy->owned_raw_.capacity() + copy->strings_.capacity() +
                           (copy->slots_.capacity() + copy->items_.capacity()) * sizeof(Value);
  retained_bytes += copy->accounted_bytes_;
  ++retained_events;
  return EventRef(copy);
}

void Event::CopyFrom(const Event& from, std::string_view raw) {
  raw_ = raw;
  strings_ = from.strings_;
  items_ = from.items_;
  slots_ = from.slots_;
  time_ms_ = from.time_ms_;
  seq_ = from.seq_;
  line_ = from.line_;
  RebaseFrom(from);
}

}  // namespace vigil::nfa
