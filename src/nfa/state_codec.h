#pragma once
// The stored form of one key's NFA state (a KeyNfaState): its runs, the matches held back for
// an earlier run, and the shared-buffer nodes and events they reach, as bytes that a state
// backend keeps and a later process turns back into the same state.
//
// Promises:
//  1. Every value starts with its format version; decoders read every version written since
//     kKeyStateFormat 1, so state survives an upgrade.
//  2. Round trip: decoding an encoded state gives runs with the same NFA states, times and
//     sequence numbers, whose events (text, time, seq, line) and stages are the same, and which
//     share prefixes as before (one node per node, one event copy per event of the key).
//  3. A truncated, corrupt or foreign value is refused with kCorruption, never half-loaded;
//     state ids and stages are checked against the pattern's NFA.
// Events are stored as their text and parsed again when decoded (for the fields the patterns
// read then), so the format does not depend on the field schema.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "nfa/compiler.h"
#include "nfa/nfa.h"

namespace vigil::nfa {

inline constexpr uint8_t kKeyStateFormat = 1;

// Appends the encoding of `state` to `*out`.
void EncodeKeyState(const KeyNfaState& state, std::string* out);

// Turns an event's stored text back into a retained Event (time parsed, seq and line unset).
using EventRestorer = std::function<Result<EventRef>(std::string_view text)>;

// Rebuilds the state encoded in `bytes` into `*state` (REQUIRES: empty), taking nodes from
// `buffer`. Errors: kCorruption for a value that is not a valid state of `nfa`; a restorer's
// error as it is. On error `*state` is left empty.
Status DecodeKeyState(std::string_view bytes, const Nfa& nfa, const EventRestorer& restore,
                      SharedBuffer* buffer, KeyNfaState* state);

}  // namespace vigil::nfa
