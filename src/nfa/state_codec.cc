#include "nfa/state_codec.h"

#include <algorithm>
#include <vector>

#include "common/byte_codec.h"

namespace vigil::nfa {
namespace {

// Format 1:
//   u8 version
//   events:  count, then per event: seq, line, text
//   nodes:   count, then per node, prefixes first: event index, stage + 1, previous node + 1
//   partial, completed: count, then per run: state, node + 1, start_ms, previous_ms, start_seq + 1
// (+1: 0 stands for none; kNoEvent + 1 wraps to 0.)
// Numbers pointers in the order they are first seen: an open-addressing table kept across
// keys, so encoding a key allocates nothing once the table has grown.
class PointerNumbers {
 public:
  // Empties only the slots in use: the table keeps the size of the largest key encoded so
  // far, and the keys after it are mostly small.
  void Clear() {
    for (const size_t i : used_) slots_[i] = Slot{};
    used_.clear();
    count_ = 0;
  }
  // The number of `p`, and whether it was new (numbered `count()` then).
  std::pair<uint64_t, bool> Number(const void* p) {
    if ((count_ + 1) * 2 > slots_.size()) Grow();
    Slot& slot = Find(p);
    if (slot.pointer == p) return {slot.number, false};
    slot = {p, count_};
    used_.push_back(static_cast<size_t>(&slot - slots_.data()));
    return {count_++, true};
  }
  uint64_t At(const void* p) { return Find(p).number; }
  bool Contains(const void* p) { return !slots_.empty() && Find(p).pointer == p; }

 private:
  struct Slot {
    const void* pointer = nullptr;
    uint64_t number = 0;
  };
  Slot& Find(const void* p) {
    const size_t mask = slots_.size() - 1;
    size_t i = (reinterpret_cast<uintptr_t>(p) >> 4) * 0x9e3779b97f4a7c15ULL >> 20 & mask;
    while (slots_[i].pointer && slots_[i].pointer != p) i = (i + 1) & mask;
    return slots_[i];
  }
  void Grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(std::max<size_t>(64, old.size() * 2), Slot{});
    used_.clear();
    for (const Slot& s : old) {
      if (!s.pointer) continue;
      Slot& slot = Find(s.pointer);
      slot = s;
      used_.push_back(static_cast<size_t>(&slot - slots_.data()));
    }
  }
  std::vector<Slot> slots_;
  std::vector<size_t> used_;  // indices of the slots in use
  uint64_t count_ = 0;
};

// Reused for every key a thread encodes.
class Encoder {
 public:
  void Encode(const KeyNfaState& state, std::string* out) {
    nodes_.clear();
    events_.clear();
    node_numbers_.Clear();
    event_numbers_.Clear();
    for (const auto* runs : {&state.partial, &state.completed}) {
      for (const ComputationState& cs : *runs) Number(cs.node);
    }
    out->push_back(static_cast<char>(kKeyStateFormat));
    PutVarint(out, events_.size());
    for (const Event* e : events_) {
      PutVarint(out, e->seq());
      PutVarint(out, e->line());
      PutBytes(out, e->raw());
    }
    PutVarint(out, nodes_.size());
    for (const BufferNode* n : nodes_) {
      PutVarint(out, event_numbers_.At(n->event.get()));
      PutVarint(out, static_cast<uint64_t>(n->stage + 1));
      PutVarint(out, n->previous ? node_numbers_.At(n->previous) + 1 : 0);
    }
    for (const auto* runs : {&state.partial, &state.completed}) {
      PutVarint(out, runs->size());
      for (const ComputationState& cs : *runs) {
        PutVarint(out, static_cast<uint64_t>(cs.state));
        PutVarint(out, cs.node ? node_numbers_.At(cs.node) + 1 : 0);
        PutSignedVarint(out, cs.start_ms);
        PutSignedVarint(out, cs.previous_ms);
        PutVarint(out, cs.start_seq + 1);
      }
    }
  }

 private:
  // Numbers `n` and its prefix, prefix first, so a decoder always meets a node's previous
  // node before the node. Iterative: a run's chain of nodes can be long.
  void Number(const BufferNode* n) {
    unnumbered_.clear();
    for (; n && !node_numbers_.Contains(n); n = n->previous) unnumbered_.push_back(n);
    for (auto it = unnumbered_.rbegin(); it != unnumbered_.rend(); ++it) {
      node_numbers_.Number(*it);
      nodes_.push_back(*it);
      if (event_numbers_.Number((*it)->event.get()).second) events_.push_back((*it)->event.get());
    }
  }

  std::vector<const BufferNode*> nodes_;
  std::vector<const Event*> events_;
  std::vector<const BufferNode*> unnumbered_;
  PointerNumbers node_numbers_;
  PointerNumbers event_numbers_;
};

// Holds the nodes made while decoding, so a failure part-way releases them all.
class DecodedNodes {
 public:
  explicit DecodedNodes(SharedBuffer* buffer) : buffer_(buffer) {}
  ~DecodedNodes() {
    for (BufferNode* n : nodes_) buffer_->Release(n);
  }
  void Add(BufferNode* n) {
    SharedBuffer::Lock(n);
    nodes_.push_back(n);
  }
  BufferNode* at(size_t i) const { return nodes_[i]; }
  size_t size() const { return nodes_.size(); }

 private:
  SharedBuffer* buffer_;
  std::vector<BufferNode*> nodes_;
};

Status Corrupt(std::string_view what) {
  return Status::Corruption("stored key state is corrupt: " + std::string(what));
}

}  // namespace

void EncodeKeyState(const KeyNfaState& state, std::string* out) {
  thread_local Encoder encoder;
  encoder.Encode(state, out);
}

Status DecodeKeyState(std::string_view bytes, const Nfa& nfa, const EventRestorer& restore,
                      SharedBuffer* buffer, KeyNfaState* state) {
  if (bytes.empty()) return Corrupt("empty value");
  const auto version = static_cast<uint8_t>(bytes[0]);
  if (version == 0 || version > kKeyStateFormat) {
    return Corrupt("unknown format version " + std::to_string(version));
  }
  ByteReader in(bytes.substr(1));
  // A count can never exceed the bytes left, which bounds what a corrupt count can allocate.
  const uint64_t most = bytes.size();
  std::vector<EventRef> events(in.Below(most));
  for (EventRef& event : events) {
    const uint64_t seq = in.Varint();
    const uint64_t line = in.Varint();
    const std::string_view text = in.Bytes();
    if (!in.ok()) return Corrupt("truncated event");
    Result<EventRef> restored = restore(text);
    if (!restored.ok()) return restored.status();
    event = std::move(*restored);
    event->set_seq(seq);
    event->set_line(line);
  }
  DecodedNodes nodes(buffer);
  const uint64_t node_count = in.Below(most);
  const auto stages = static_cast<uint64_t>(nfa.pattern().stage_names.size());
  for (uint64_t i = 0; i < node_count && in.ok(); ++i) {
    const uint64_t event = in.Below(events.size());
    const uint64_t stage = in.Below(stages + 1);
    const uint64_t previous = in.Below(nodes.size() + 1);
    if (!in.ok()) break;
    nodes.Add(buffer->Put(events[event], static_cast<int>(stage) - 1,
                          previous ? nodes.at(previous - 1) : nullptr));
  }
  const auto states = static_cast<uint64_t>(nfa.states().size());
  for (auto* runs : {&state->partial, &state->completed}) {
    runs->resize(in.Below(most));
    for (ComputationState& cs : *runs) {
      cs.state = static_cast<int32_t>(in.Below(states));
      const uint64_t node = in.Below(nodes.size() + 1);
      cs.node = node && in.ok() ? nodes.at(node - 1) : nullptr;
      cs.start_ms = in.SignedVarint();
      cs.previous_ms = in.SignedVarint();
      cs.start_seq = in.Varint() - 1;
    }
  }
  if (!in.done()) {
    state->partial.clear();
    state->completed.clear();
    return Corrupt("truncated or out-of-range value");
  }
  // Each run holds its last node; the decoder's own holds go when `nodes` does.
  for (const auto* runs : {&state->partial, &state->completed}) {
    for (const ComputationState& cs : *runs) SharedBuffer::Lock(cs.node);
  }
  return Status::Ok();
}

}  // namespace vigil::nfa
