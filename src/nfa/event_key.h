#pragma once
// The key an event has under a pattern, in the forms the matching machinery needs: its
// identity (type and value as bytes: "1" and 1 are different keys, 1 and 1.0 the same), its
// hash, the shard that owns it, and its JSON text for matches. Every place that keys or
// routes events uses these, so a key lands in the same state wherever it is looked up.

#include <cstdint>
#include <string>
#include <string_view>

#include "nfa/event.h"
#include "nfa/pattern.h"
#include "nfa/value.h"

namespace vigil::nfa {

// The value of `pattern`'s key in `event`; null for a pattern without a key.
Value KeyOf(const Pattern& pattern, const Event& event);
// The same for a key field given by its schema slot (-1: no key).
inline Value KeyOfSlot(int key_slot, const Event& event) {
  return key_slot >= 0 ? event.field(key_slot) : Value::Null();
}

// Writes the identity of key value `v` to `*identity`. Returns false when `v` cannot be a
// key (missing, or a list or object).
bool EncodeKey(const Value& v, std::string* identity);

// Why `v` cannot be `pattern`'s key (for a value EncodeKey refused).
std::string KeyProblem(const Pattern& pattern, const Value& v);

// The hash of an identity; also the key index's hash.
uint64_t HashKey(std::string_view identity);

// Which of `shards` owns the key with `hash`: the hash's high half scaled to the shard count,
// so it is independent of the low bits that place the key in a shard's index.
inline uint32_t ShardOf(uint64_t hash, uint32_t shards) {
  return static_cast<uint32_t>(((hash >> 32) * shards) >> 32);
}

// The key as JSON, from its identity.
std::string KeyJson(std::string_view identity);

}  // namespace vigil::nfa
