#pragma once
// Appending JSON text: strings with the escapes RFC 8259 requires, and numbers that read back
// as the same double (integers print without a fraction).

#include <string>
#include <string_view>

namespace vigil {

// Bytes that are not valid UTF-8 are written as U+FFFD, so the output is always valid JSON.
void AppendJsonString(std::string* out, std::string_view s);

// `s` without the JSON whitespace (space, tab, CR, LF) at either end.
inline std::string_view TrimJsonWhitespace(std::string_view s) {
  constexpr std::string_view kWhitespace = " \t\r\n";
  const size_t first = s.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kWhitespace) + 1 - first);
}
void AppendJsonNumber(std::string* out, double d);

}  // namespace vigil
