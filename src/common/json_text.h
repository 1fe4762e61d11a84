#pragma once
// Appending JSON text: strings with the escapes RFC 8259 requires, and numbers that read back
// as the same double (integers print without a fraction).

#include <string>
#include <string_view>

namespace vigil {

void AppendJsonString(std::string* out, std::string_view s);
void AppendJsonNumber(std::string* out, double d);

}  // namespace vigil
