#pragma once
// Value: what a field of an event or a condition sub-expression evaluates to.
//
// A Value never owns memory: strings and lists point into an Event, a compiled condition's
// literals, or the evaluation scratch (see condition.h). That keeps evaluation free of heap
// allocation for plain comparisons. Missing is "no value": a missing field, or the result of
// an operation on the wrong types; a condition that evaluates to Missing is false.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vigil::nfa {

class Event;

struct Value {
  enum class Kind : uint8_t { kMissing, kNull, kBool, kNumber, kString, kList, kEvent, kObject };

  Kind kind = Kind::kMissing;
  union {
    bool boolean;
    double number;
    struct {
      const char* data;
      size_t size;
    } str;
    struct {
      const Value* data;
      size_t size;
    } list;
    const Event* event;
  };

  constexpr Value() : number(0) {}

  static Value Missing() { return Value(); }
  static Value Null() {
    Value v;
    v.kind = Kind::kNull;
    return v;
  }
  static Value Bool(bool b) {
    Value v;
    v.kind = Kind::kBool;
    v.boolean = b;
    return v;
  }
  static Value Number(double d) {
    Value v;
    v.kind = Kind::kNumber;
    v.number = d;
    return v;
  }
  static Value String(std::string_view s) {
    Value v;
    v.kind = Kind::kString;
    v.str.data = s.data();
    v.str.size = s.size();
    return v;
  }
  static Value List(const Value* data, size_t size) {
    Value v;
    v.kind = Kind::kList;
    v.list.data = data;
    v.list.size = size;
    return v;
  }
  static Value OfEvent(const Event* e) {
    Value v;
    v.kind = Kind::kEvent;
    v.event = e;
    return v;
  }
  static Value Object() {
    Value v;
    v.kind = Kind::kObject;
    return v;
  }

  bool is_missing() const { return kind == Kind::kMissing; }
  bool is_true() const { return kind == Kind::kBool && boolean; }
  std::string_view string() const { return {str.data, str.size}; }
};

}  // namespace vigil::nfa
