// libFuzzer target: pattern documents (YAML or JSON) through the parser and the compiler.
// Any input must give patterns or errors; a crash, a sanitizer report or a hang is a bug.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "nfa/compiler.h"
#include "nfa/field_schema.h"
#include "nfa/pattern.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vigil::nfa::FieldSchema schema;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  vigil::nfa::ParsedPatterns parsed = vigil::nfa::ParsePatterns(text, "fuzz", &schema);
  for (vigil::nfa::Pattern& pattern : parsed.patterns) {
    (void)vigil::nfa::NfaCompiler::Compile(
        std::make_shared<const vigil::nfa::Pattern>(std::move(pattern)));
  }
  return 0;
}
