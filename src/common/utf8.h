#pragma once
// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), for
// text that is stored and later written into JSON, where invalid bytes would make the output
// invalid.

#include <cstddef>
#include <string_view>

namespace vigil {

// The length (1 to 4) of the valid UTF-8 sequence starting at s[at], or 0 when none starts
// there. REQUIRES: at < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t at);

// The offset of the first byte that does not start a valid UTF-8 sequence, or npos when all
// of `s` is valid.
size_t FindInvalidUtf8(std::string_view s);

}  // namespace vigil
