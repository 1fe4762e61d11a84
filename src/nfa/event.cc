#include "nfa/event.h"

namespace vigil::nfa {

void Event::Clear() {
  slots_.clear();
  strings_.clear();
  items_.clear();
  owned_raw_.clear();
  raw_ = {};
  time_ms_ = 0;
  seq_ = 0;
  line_ = 0;
}

Value Event::Rebased(const Value& v, const Event& from) const {
  Value out = v;
  if (v.kind == Value::Kind::kString) {
    const char* p = v.str.data;
    if (p >= from.raw_.data() && p <= from.raw_.data() + from.raw_.size()) {
      out.str.data = raw_.data() + (p - from.raw_.data());
    } else if (p >= from.strings_.data() && p <= from.strings_.data() + from.strings_.size()) {
      out.str.data = strings_.data() + (p - from.strings_.data());
    }
  } else if (v.kind == Value::Kind::kList) {
    out.list.data = items_.data() + (v.list.data - from.items_.data());
  }
  return out;
}

void Event::RebaseFrom(const Event& from) {
  for (Value& v : items_) v = Rebased(v, from);
  for (Value& v : slots_) v = Rebased(v, from);
}

EventRef Event::Retain() const {
  auto* copy = new Event();
  copy->owned_raw_.assign(raw_);
  copy->raw_ = copy->owned_raw_;
  copy->strings_ = strings_;
  copy->items_ = items_;
  copy->slots_ = slots_;
  copy->time_ms_ = time_ms_;
  copy->seq_ = seq_;
  copy->line_ = line_;
  copy->RebaseFrom(*this);
  return EventRef(copy);
}

}  // namespace vigil::nfa
