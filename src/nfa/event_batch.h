#pragma once
// EventBatch: events parsed one after another and matched together (Matcher::AddBatch), so
// the state of all their keys is loaded at once. It owns the Event objects, which keep their
// buffers from batch to batch. The texts the events point into must stay valid until the
// batch is matched.

#include <cstddef>
#include <span>
#include <vector>

#include "nfa/event.h"

namespace vigil::nfa {

class EventBatch {
 public:
  static constexpr size_t kCapacity = 32;

  EventBatch() : events_(kCapacity) {}

  // Where to parse the next event. REQUIRES: !full().
  Event* next() { return &events_[batch_.size()]; }
  // Keeps the event just parsed into next().
  void Keep() { batch_.push_back(&events_[batch_.size()]); }

  bool full() const { return batch_.size() == kCapacity; }
  bool empty() const { return batch_.empty(); }
  size_t size() const { return batch_.size(); }

  // Hands the kept events, in order, to `matcher`'s AddBatch (a Matcher, or anything that
  // takes batches as it does, with `args` after them) and empties the batch.
  template <typename BatchMatcher, typename... Args>
  void MatchAll(BatchMatcher* matcher, Args... args) {
    if (!batch_.empty()) matcher->AddBatch(std::span<Event* const>(batch_), args...);
    batch_.clear();
  }

 private:
  std::vector<Event> events_;
  std::vector<Event*> batch_;
};

}  // namespace vigil::nfa
