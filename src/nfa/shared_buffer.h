#pragma once
// SharedBuffer: the events that partial matches took, stored once and shared.
//
// Flink's SharedBuffer idea, with the run structure made explicit: every TAKE adds one
// BufferNode (event, stage, link to the run's previous node), so runs that share a prefix
// share its nodes and no run is ever copied. Nodes are reference counted: a node is held by
// each computation state that ends at it and by each node linked after it; releasing the last
// holder frees the node and, transitively, the prefix only it used. A run's events are found
// by walking the links back from its last node, so Flink's Dewey versions are not needed.
// Nodes come from a free list; steady-state matching allocates nothing here.
// Not thread-safe: one SharedBuffer per matching thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "nfa/event.h"

namespace vigil::nfa {

struct BufferNode {
  EventRef event;
  BufferNode* previous = nullptr;
  uint32_t refs = 0;
  int32_t stage = -1;
};

class SharedBuffer {
 public:
  SharedBuffer() = default;
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;

  // A new node for `event` taken by `stage` after `previous` (may be null). The node starts
  // with no holder: the caller must Lock() it.
  BufferNode* Put(const EventRef& event, int stage, BufferNode* previous) {
    BufferNode* n = Allocate();
    n->event = event;
    n->stage = stage;
    n->previous = previous;
    n->refs = 0;
    Lock(previous);
    ++live_;
    return n;
  }

  static void Lock(BufferNode* n) {
    if (n) ++n->refs;
  }

  // Drops one hold on `n`; frees it and every prefix node no longer held.
  void Release(BufferNode* n) {
    while (n && --n->refs == 0) {
      BufferNode* previous = n->previous;
      n->event = EventRef();
      n->previous = free_;
      free_ = n;
      --live_;
      n = previous;
    }
  }

  // Nodes currently held by some run.
  size_t live_nodes() const { return live_; }

 private:
  static constexpr size_t kChunk = 1024;

  BufferNode* Allocate() {
    if (!free_) {
      chunks_.push_back(std::make_unique<BufferNode[]>(kChunk));
      BufferNode* chunk = chunks_.back().get();
      for (size_t i = 0; i < kChunk; ++i) {
        chunk[i].previous = free_;
        free_ = &chunk[i];
      }
    }
    BufferNode* n = free_;
    free_ = n->previous;
    return n;
  }

  std::vector<std::unique_ptr<BufferNode[]>> chunks_;
  BufferNode* free_ = nullptr;
  size_t live_ = 0;
};

}  // namespace vigil::nfa
