// EventParser: which fields it reads, how it reads them, and every way an event is refused.
#include "nfa/event_parser.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <string>
#include <vector>

#include "support/counted_allocations.h"

TEST_SUITE_BEGIN("nfa");

namespace {

using vigil::nfa::Event;
using vigil::nfa::EventParser;
using vigil::nfa::FieldSchema;
using vigil::nfa::Value;

struct Parsed {
  vigil::Status status;
  std::string text;  // owns the bytes the event points into
  Event event;
};

void Parse(EventParser& parser, const std::string& json, Parsed* out) {
  out->text = json + std::string(simdjson::SIMDJSON_PADDING, '\0');
  out->status = parser.Parse(std::string_view(out->text.data(), json.size()), out->text.size(), &out->event);
}

}  // namespace

TEST_CASE("EventParser: reads the schema's fields, nested and escaped, and keeps the raw text") {
  FieldSchema schema;
  const int card = schema.Intern({"card_id"});
  const int country = schema.Intern({"merchant", "country"});
  const int odd = schema.Intern({"odd name"});
  const int tags = schema.Intern({"tags"});
  const int absent = schema.Intern({"absent"});
  EventParser parser(&schema, "ts");
  Parsed p;
  const std::string json =
      R"({"c\u0061rd_id":"c1","ts":1700000000000,"merchant":{"country":"N\"L","id":7},)"
      R"("odd name":true,"tags":["a",2,null],"other":{"deep":[1,[2]]}})";
  Parse(parser, json, &p);
  REQUIRE(p.status.ok());
  CHECK(p.event.raw() == json);
  CHECK(p.event.time_ms() == 1700000000000);
  CHECK(p.event.field(card).string() == "c1");  // found through its escaped spelling
  CHECK(p.event.field(country).string() == "N\"L");
  CHECK(p.event.field(odd).is_true());
  const Value& list = p.event.field(tags);
  REQUIRE(list.kind == Value::Kind::kList);
  REQUIRE(list.list.size == 3);
  CHECK(list.list.data[0].string() == "a");
  CHECK(list.list.data[1].number == 2);
  CHECK(list.list.data[2].kind == Value::Kind::kNull);
  CHECK(p.event.field(absent).is_missing());
}

TEST_CASE("EventParser: a retained copy owns its bytes, in one allocation") {
  FieldSchema schema;
  const int name = schema.Intern({"name"});
  const int tags = schema.Intern({"tags"});
  EventParser parser(&schema, "ts");
  Parsed p;
  Parse(parser, R"({"ts":1,"name":"tab\there","tags":["x\"y","plain",3]})", &p);
  REQUIRE(p.status.ok());
  // The pool may hold blocks freed by earlier tests: drain it so the copies allocate.
  std::vector<vigil::nfa::EventRef> drained;
  for (int i = 0; i < 5000; ++i) drained.push_back(p.event.Retain());
  const long before = vigil::testing::CountedAllocations();
  vigil::nfa::EventRef copy = p.event.Retain();
  CHECK(vigil::testing::CountedAllocations() - before == 1);
  vigil::nfa::EventRef copy_of_copy = copy->Retain();
  Parse(parser, R"({"ts":2,"name":"other","tags":["z"]})", &p);  // overwrites the scratch event and text
  copy = vigil::nfa::EventRef();  // the second copy reads only its own block
  for (const vigil::nfa::EventRef& e : {copy_of_copy, drained.back()}) {
    CHECK(e->raw() == R"({"ts":1,"name":"tab\there","tags":["x\"y","plain",3]})");
    CHECK(e->field(name).string() == "tab\there");
    const Value& list = e->field(tags);
    REQUIRE(list.kind == Value::Kind::kList);
    REQUIRE(list.list.size == 3);
    CHECK(list.list.data[0].string() == "x\"y");
    CHECK(list.list.data[1].string() == "plain");
    CHECK(list.list.data[2].number == 3);
    CHECK(e->time_ms() == 1);
  }
}

TEST_CASE("EventParser: a retained event is counted at its own size, not at a recycled larger one's") {
  FieldSchema schema;
  schema.Intern({"name"});
  EventParser parser(&schema, "ts");
  Parsed p;
  Parse(parser, R"({"ts":1,"name":")" + std::string(2000, 'x') + R"("})", &p);
  REQUIRE(p.status.ok());
  const uint64_t base = Event::RetainedBytesOnThisThread();
  vigil::nfa::EventRef large = p.event.Retain();
  const uint64_t large_bytes = Event::RetainedBytesOnThisThread() - base;
  CHECK(large_bytes >= 2000);
  large = vigil::nfa::EventRef();  // its block goes to the pool
  Parse(parser, R"({"ts":2,"name":"y"})", &p);
  vigil::nfa::EventRef small = p.event.Retain();
  CHECK(Event::RetainedBytesOnThisThread() - base < 256);
  CHECK(small->raw() == R"({"ts":2,"name":"y"})");
}

TEST_CASE("EventParser: event time is epoch milliseconds or RFC 3339") {
  FieldSchema schema;
  EventParser parser(&schema, "at");
  Parsed p;
  Parse(parser, R"({"at":"2024-05-01T12:00:00.250+02:00"})", &p);
  REQUIRE(p.status.ok());
  CHECK(p.event.time_ms() == 1714557600250);
  Parse(parser, R"({"at":"1970-01-01T00:00:00Z"})", &p);
  CHECK(p.event.time_ms() == 0);
}

TEST_CASE("EventParser: every refusal says why") {
  FieldSchema schema;
  EventParser parser(&schema, "ts");
  auto error = [&](const std::string& json) {
    Parsed p;
    Parse(parser, json, &p);
    return p.status.ok() ? std::string("accepted") : p.status.message();
  };
  CHECK(error("[1,2]") == "event is not a JSON object");
  CHECK(error("{\"ts\":1} {}") == "malformed JSON: trailing content after the object");
  CHECK(error("{\"ts\":1,").find("malformed JSON") == 0);
  CHECK(error("{\"a\":1}") == "missing time field 'ts'");
  CHECK(error("{\"ts\":1.5}") == "time field 'ts' is not an integer of epoch milliseconds");
  CHECK(error("{\"ts\":\"noon\"}") == "time field 'ts' is not an RFC 3339 date-time: 'noon'");
  CHECK(error("{\"ts\":true}") == "time field 'ts' must be epoch milliseconds or an RFC 3339 string");
  CHECK(error("{\"ts\":1}") == "accepted");
}

TEST_SUITE_END();
