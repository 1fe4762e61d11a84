#pragma once
// EventParser: JSON text -> Event, reading only the fields a FieldSchema names.
//
// One pass over the object with simdjson's On-Demand API; no allocation per event once the
// scratch Event's buffers have grown to the largest event seen. The event time comes from the
// configured time field: an integer of epoch milliseconds or an RFC 3339 string.
// Not thread-safe: one parser per thread. Parse() reads only what the last Refresh() took
// from the schema, so the schema may grow on another thread between Refresh() calls.

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "nfa/event.h"
#include "nfa/field_schema.h"

namespace vigil::nfa {

class EventParser {
 public:
  // `time_field` is a dotted path, interned into `schema` by the constructor.
  EventParser(FieldSchema* schema, const std::string& time_field);
  ~EventParser();

  // Re-reads the schema (after patterns were added): later events get the new fields. Cheap;
  // call between events, never while the schema is being changed.
  void Refresh();

  // Parses `text` into `*out` (its previous contents are discarded). `text` must stay valid
  // while `*out` is used, and must be readable for simdjson::SIMDJSON_PADDING bytes past its
  // end (`readable_size` is what really is). On error, returns kInvalidArgument with the reason.
  Status Parse(std::string_view text, size_t readable_size, Event* out);

  int time_slot() const { return time_slot_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  FieldSchema* schema_;
  std::string time_field_;
  int time_slot_;
};

}  // namespace vigil::nfa
