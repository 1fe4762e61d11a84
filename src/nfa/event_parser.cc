#include "nfa/event_parser.h"

#include <simdjson.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/time_util.h"

namespace vigil::nfa {
namespace od = simdjson::ondemand;

namespace {

// The schema's paths as a trie, so one pass over the object finds every wanted field.
struct FieldNode {
  std::string name;
  int slot = -1;
  std::vector<FieldNode> children;

  FieldNode* Child(std::string_view key) {
    for (FieldNode& c : children) {
      if (c.name == key) return &c;
    }
    return nullptr;
  }

  // Reads the key as written in the JSON text, without unescaping it: most events are a few
  // plain keys, and unescaping every key of every event costs more than matching it. Only a
  // key written with an escape sequence takes the unescaping path.
  FieldNode* Child(od::field& field) {
    const char* key = field.key().raw();
    size_t length = 0;
    while (key[length] != '"' && key[length] != '\\') ++length;
    if (key[length] == '"') return Child(std::string_view(key, length));
    std::string_view unescaped;
    if (field.unescaped_key().get(unescaped)) return nullptr;
    return Child(unescaped);
  }
};

}  // namespace

struct EventParser::Impl {
  od::parser parser;
  FieldNode root;
  int built_for = -1;
  Event* out = nullptr;
  std::string error;

  void Build(const FieldSchema& schema) {
    root = FieldNode();
    for (int slot = 0; slot < schema.size(); ++slot) {
      FieldNode* node = &root;
      for (const std::string& part : schema.path(slot)) {
        FieldNode* next = node->Child(part);
        if (!next) {
          node->children.push_back(FieldNode{part, -1, {}});
          next = &node->children.back();
        }
        node = next;
      }
      node->slot = slot;
    }
    built_for = schema.size();
  }

  // Stores a string, pointing into the raw text when it has no escapes.
  Value StringValue(od::value& v, std::string_view raw_token) {
    // raw_token is the quoted token; without a backslash its inside is the string itself.
    std::string_view inner = raw_token;
    while (!inner.empty() && inner.back() != '"') inner.remove_suffix(1);
    if (inner.size() >= 2 && inner.find('\\') == std::string_view::npos) {
      return Value::String(inner.substr(1, inner.size() - 2));
    }
    std::string_view s;
    if (v.get_string().get(s)) return Value::Missing();
    std::string& strings = out->buffers_->strings;
    const size_t offset = strings.size();
    strings.append(s);
    return Value::String(std::string_view(strings).substr(offset, s.size()));
  }

  simdjson::error_code Scalar(od::value& v, Value* result) {
    od::json_type type;
    if (auto err = v.type().get(type)) return err;
    switch (type) {
      case od::json_type::number: {
        double d;
        if (auto err = v.get_double().get(d)) return err;
        *result = Value::Number(d);
        return simdjson::SUCCESS;
      }
      case od::json_type::string: {
        std::string_view token = v.raw_json_token();
        *result = StringValue(v, token);
        return simdjson::SUCCESS;
      }
      case od::json_type::boolean: {
        bool b;
        if (auto err = v.get_bool().get(b)) return err;
        *result = Value::Bool(b);
        return simdjson::SUCCESS;
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto err = v.is_null().get(is_null)) return err;
        *result = Value::Null();
        return simdjson::SUCCESS;
      }
      case od::json_type::object:
        *result = Value::Object();
        return simdjson::SUCCESS;  // left unread; the iterator skips it
      case od::json_type::array:
        break;
    }
    // Lists of scalars are kept (for `in` and `size`); nested containers become opaque.
    od::array arr;
    if (auto err = v.get_array().get(arr)) return err;
    std::vector<Value>& items = out->buffers_->items;
    const size_t first = items.size();
    for (auto element : arr) {
      od::value item;
      if (auto err = element.get(item)) return err;
      Value iv;
      od::json_type item_type;
      if (auto err = item.type().get(item_type)) return err;
      if (item_type == od::json_type::array) {
        iv = Value::Object();
      } else if (auto err = Scalar(item, &iv)) {
        return err;
      }
      items.push_back(iv);
    }
    // The list points at its first element by index until Finish() fixes the address.
    Value list = Value::List(nullptr, items.size() - first);
    list.list.data = reinterpret_cast<const Value*>(first);
    *result = list;
    return simdjson::SUCCESS;
  }

  simdjson::error_code Object(od::object obj, FieldNode& node) {
    std::vector<Value>& slots = out->buffers_->slots;
    for (auto field_result : obj) {
      od::field field;
      if (auto err = std::move(field_result).get(field)) return err;
      FieldNode* child = node.Child(field);
      if (!child) continue;
      od::value v = field.value();
      if (child->children.empty()) {
        if (auto err = Scalar(v, &slots[child->slot])) return err;
        continue;
      }
      od::json_type type;
      if (auto err = v.type().get(type)) return err;
      if (type == od::json_type::object) {
        if (child->slot >= 0) slots[child->slot] = Value::Object();
        od::object inner;
        if (auto err = v.get_object().get(inner)) return err;
        if (auto err = Object(inner, *child)) return err;
      } else if (child->slot >= 0) {
        if (auto err = Scalar(v, &slots[child->slot])) return err;
      }
    }
    return simdjson::SUCCESS;
  }

  void Finish() {
    auto fix = [&](Value& v) {
      if (v.kind == Value::Kind::kList) {
        v.list.data = out->buffers_->items.data() + reinterpret_cast<size_t>(v.list.data);
      }
    };
    for (Value& v : out->buffers_->slots) fix(v);
  }
};

EventParser::EventParser(FieldSchema* schema, const std::string& time_field)
    : impl_(std::make_unique<Impl>()),
      schema_(schema),
      time_field_(time_field),
      time_slot_(schema->Intern(SplitFieldPath(time_field))) {
  Refresh();
}

EventParser::~EventParser() = default;

void EventParser::Refresh() {
  if (impl_->built_for != schema_->size()) impl_->Build(*schema_);
}

Status EventParser::Parse(std::string_view text, size_t readable_size, Event* out) {
  out->Clear();
  out->raw_ = text;
  // The schema as of the last Refresh(): it may be growing on another thread meanwhile.
  Event::ParseBuffers& buffers = out->BuffersForParsing();
  buffers.slots.resize(impl_->built_for);
  buffers.strings.reserve(text.size());
  out->slots_ = buffers.slots.data();
  out->slot_count_ = static_cast<uint32_t>(buffers.slots.size());
  impl_->out = out;

  od::document doc;
  simdjson::padded_string_view view(text.data(), text.size(), readable_size);
  auto fail = [](simdjson::error_code err) {
    return Status::InvalidArgument(std::string("malformed JSON: ") + simdjson::error_message(err));
  };
  if (auto err = impl_->parser.iterate(view).get(doc)) return fail(err);
  od::object obj;
  if (auto err = doc.get_object().get(obj)) {
    if (err == simdjson::INCORRECT_TYPE) return Status::InvalidArgument("event is not a JSON object");
    return fail(err);
  }
  if (auto err = impl_->Object(obj, impl_->root)) return fail(err);
  const char* trailing = nullptr;
  if (doc.current_location().get(trailing) == simdjson::SUCCESS) return Status::InvalidArgument("malformed JSON: trailing content after the object");
  impl_->Finish();

  const Value& t = out->slots_[time_slot_];
  switch (t.kind) {
    case Value::Kind::kNumber: {
      if (!std::isfinite(t.number) || t.number != std::floor(t.number) || t.number < -9.2e18 ||
          t.number > 9.2e18) {
        return Status::InvalidArgument("time field '" + time_field_ +
                                       "' is not an integer of epoch milliseconds");
      }
      out->time_ms_ = static_cast<int64_t>(t.number);
      break;
    }
    case Value::Kind::kString: {
      auto ms = ParseRfc3339Ms(t.string());
      if (!ms) {
        return Status::InvalidArgument("time field '" + time_field_ +
                                       "' is not an RFC 3339 date-time: '" +
                                       std::string(t.string()) + "'");
      }
      out->time_ms_ = *ms;
      break;
    }
    case Value::Kind::kMissing:
      return Status::InvalidArgument("missing time field '" + time_field_ + "'");
    default:
      return Status::InvalidArgument("time field '" + time_field_ +
                                     "' must be epoch milliseconds or an RFC 3339 string");
  }
  return Status::Ok();
}

}  // namespace vigil::nfa
