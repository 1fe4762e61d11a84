#include "nfa/state_codec.h"

#include <unordered_map>
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
class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}

  void Encode(const KeyNfaState& state) {
    for (const auto* runs : {&state.partial, &state.completed}) {
      for (const ComputationState& cs : *runs) Number(cs.node);
    }
    out_->push_back(static_cast<char>(kKeyStateFormat));
    PutVarint(out_, events_.size());
    for (const Event* e : events_) {
      PutVarint(out_, e->seq());
      PutVarint(out_, e->line());
      PutBytes(out_, e->raw());
    }
    PutVarint(out_, nodes_.size());
    for (const BufferNode* n : nodes_) {
      PutVarint(out_, event_index_.at(n->event.get()));
      PutVarint(out_, static_cast<uint64_t>(n->stage + 1));
      PutVarint(out_, n->previous ? node_index_.at(n->previous) + 1 : 0);
    }
    for (const auto* runs : {&state.partial, &state.completed}) {
      PutVarint(out_, runs->size());
      for (const ComputationState& cs : *runs) {
        PutVarint(out_, static_cast<uint64_t>(cs.state));
        PutVarint(out_, cs.node ? node_index_.at(cs.node) + 1 : 0);
        PutSignedVarint(out_, cs.start_ms);
        PutSignedVarint(out_, cs.previous_ms);
        PutVarint(out_, cs.start_seq + 1);
      }
    }
  }

 private:
  // Numbers `n` and its prefix, prefix first, so a decoder always meets a node's previous
  // node before the node.
  void Number(const BufferNode* n) {
    if (!n || node_index_.contains(n)) return;
    Number(n->previous);
    node_index_.emplace(n, nodes_.size());
    nodes_.push_back(n);
    if (event_index_.emplace(n->event.get(), events_.size()).second) events_.push_back(n->event.get());
  }

  std::string* out_;
  std::vector<const BufferNode*> nodes_;
  std::unordered_map<const BufferNode*, uint64_t> node_index_;
  std::vector<const Event*> events_;
  std::unordered_map<const Event*, uint64_t> event_index_;
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

void EncodeKeyState(const KeyNfaState& state, std::string* out) { Encoder(out).Encode(state); }

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
