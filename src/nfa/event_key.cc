#include "nfa/event_key.h"

#include "common/json_text.h"
#include "nfa/key_index.h"

namespace vigil::nfa {

Value KeyOf(const Pattern& pattern, const Event& event) { return KeyOfSlot(pattern.key_slot, event); }

bool EncodeKey(const Value& v, std::string* identity) {
  identity->clear();
  switch (v.kind) {
    case Value::Kind::kString:
      identity->push_back('s');
      identity->append(v.string());
      return true;
    case Value::Kind::kNumber:
      identity->push_back('n');
      AppendJsonNumber(identity, v.number);
      return true;
    case Value::Kind::kBool:
      identity->push_back(v.boolean ? 't' : 'f');
      return true;
    case Value::Kind::kNull:
      identity->push_back('z');
      return true;
    default:
      return false;
  }
}

std::string KeyProblem(const Pattern& pattern, const Value& v) {
  return v.is_missing() ? "missing key field '" + *pattern.key + "'"
                        : "key field '" + *pattern.key + "' must be a string, number, boolean or null";
}

uint64_t HashKey(std::string_view identity) { return KeyIndex::Hash(identity); }

std::string KeyJson(std::string_view identity) {
  std::string out;
  switch (identity.front()) {
    case 's':
      AppendJsonString(&out, identity.substr(1));
      break;
    case 'n':
      out = identity.substr(1);
      break;
    case 't':
      out = "true";
      break;
    case 'f':
      out = "false";
      break;
    default:
      out = "null";
  }
  return out;
}

}  // namespace vigil::nfa
