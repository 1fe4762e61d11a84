#pragma once
// The JSON form of a match, shared by `vigil replay` and the server's alerts.

#include <string>
#include <string_view>

#include "nfa/compiler.h"
#include "nfa/nfa.h"

namespace vigil::nfa {

// Appends `"pattern":ID,"key":KEY,"match":{STAGE:[EVENT,...],...}` (and `,"timeout":true` for a
// timed-out partial match), without the enclosing braces. Stages come in pattern order; each
// event is its original JSON text.
void AppendMatchFields(std::string* out, const Nfa& nfa, std::string_view key_json,
                       const Match& match);

}  // namespace vigil::nfa
