#include "common/utf8.h"

namespace vigil {

size_t Utf8SequenceLength(std::string_view s, size_t at) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(s.data()) + at;
  const size_t available = s.size() - at;
  const unsigned char lead = bytes[0];
  if (lead < 0x80) return 1;
  // Sequence length, and the range its second byte must fall in (this excludes overlong
  // forms, surrogates and code points above U+10FFFF); later bytes are 80..BF.
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (length > available || bytes[1] < low || bytes[1] > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (bytes[k] < 0x80 || bytes[k] > 0xBF) return 0;
  }
  return length;
}

size_t FindInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t length = Utf8SequenceLength(s, i);
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

}  // namespace vigil
