// libFuzzer target: one event line through the event parser, with fields at several depths
// in the schema and the time read as a number or an RFC 3339 string.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "nfa/event.h"
#include "nfa/event_parser.h"
#include "nfa/field_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static vigil::nfa::FieldSchema* schema = [] {
    auto* s = new vigil::nfa::FieldSchema;
    for (const char* path : {"card_id", "amount", "type", "merchant.country", "a.b.c.d", "tags"}) {
      s->Intern(vigil::nfa::SplitFieldPath(path));
    }
    return s;
  }();
  static vigil::nfa::EventParser parser(schema, "ts");
  static std::string buffer;
  buffer.assign(reinterpret_cast<const char*>(data), size);
  buffer.append(simdjson::SIMDJSON_PADDING, ' ');
  vigil::nfa::Event event;
  (void)parser.Parse(std::string_view(buffer).substr(0, size), buffer.size(), &event);
  return 0;
}
