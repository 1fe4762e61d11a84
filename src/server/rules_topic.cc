#include "server/rules_topic.h"

#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {
namespace {

constexpr int kTimeoutMs = 30000;
constexpr int64_t kApplyWaitMs = 10000;

struct Envelope {
  std::string source;
  std::string content_type;
  bool enabled = true;
  std::string request;
};

// The envelope vigil publishes, or else the value itself as a document (published by hand).
Envelope Read(std::string_view value) {
  Envelope e;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view text;
  if (!parser.parse(value.data(), value.size()).get(doc) && !doc["source"].get(text)) {
    e.source = std::string(text);
    std::string_view type;
    e.content_type = doc["content_type"].get(type) ? "application/yaml" : std::string(type);
    bool enabled = true;
    if (!doc["enabled"].get(enabled)) e.enabled = enabled;
    std::string_view request;
    if (!doc["request"].get(request)) e.request = std::string(request);
    return e;
  }
  e.source = std::string(value);
  e.content_type = TrimJsonWhitespace(value).starts_with('{') ? "application/json" : "application/yaml";
  return e;
}

}  // namespace

RulesTopic::RulesTopic(const ServerOptions::Kafka& options, PatternRegistry* registry)
    : options_(options), registry_(registry) {}

RulesTopic::~RulesTopic() = default;

Status RulesTopic::Open() {
  kafka::Properties properties = options_.properties;
  properties["bootstrap.servers"] = options_.brokers;
  if (Status s = kafka::CreateTopics(properties, {{options_.rules_topic, 1, options_.replication_factor, true}},
                                     kTimeoutMs);
      !s.ok()) {
    return s;
  }
  Result<std::unique_ptr<kafka::TopicReader>> reader = kafka::TopicReader::Open(properties, options_.rules_topic, kTimeoutMs);
  if (!reader.ok()) return reader.status();
  reader_ = std::move(*reader);
  Result<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Open(properties, "");
  if (!producer.ok()) return producer.status();
  producer_ = std::move(*producer);
  // Everything published so far, to the end of the topic.
  const int64_t deadline = SteadyClockMs() + kTimeoutMs;
  while (!reader_->at_end()) {
    if (SteadyClockMs() > deadline) return Status::Unavailable("the rules topic could not be read to its end");
    Poll(500);
  }
  std::vector<std::string> absent;
  for (const StoredPattern* stored : registry_->List()) {
    if (!in_topic_.contains(stored->id)) absent.push_back(stored->id);
  }
  for (const std::string& id : absent) {
    std::fprintf(stderr, "vigil: rules topic: pattern '%s' is not in the topic, deleted here too\n", id.c_str());
    registry_->ApplyPublished(id, nullptr, "", false, 0);
  }
  return Status::Ok();
}

void RulesTopic::Poll(int timeout_ms) {
  if (!reader_ || !reader_->Poll(timeout_ms, &entries_).ok()) return;
  for (const kafka::TopicReader::Entry& entry : entries_) Apply(entry, "");
}

bool RulesTopic::Apply(const kafka::TopicReader::Entry& entry, const std::string& request) {
  const std::string id(entry.key);
  const uint64_t version = static_cast<uint64_t>(entry.offset) + 1;
  std::variant<PatternRegistry::Change, PatternRegistry::Refusal> outcome;
  Envelope e;
  if (entry.tombstone) {
    in_topic_.erase(id);
    outcome = registry_->ApplyPublished(id, nullptr, "", false, version);
  } else {
    in_topic_.insert(id);
    e = Read(entry.value);
    outcome = registry_->ApplyPublished(id, &e.source, e.content_type, e.enabled, version);
  }
  if (auto* refusal = std::get_if<PatternRegistry::Refusal>(&outcome)) {
    ++refused_;
    std::string why = refusal->message;
    for (const nfa::PatternError& error : refusal->errors) why += "; " + error.ToString();
    std::fprintf(stderr, "vigil: rules topic: pattern '%s' (offset %lld) not applied: %s\n", id.c_str(),
                 static_cast<long long>(entry.offset), why.c_str());
  } else {
    ++applied_;
  }
  return !request.empty() && e.request == request;
}

Status RulesTopic::Publish(const std::string& id, const std::string* source, const std::string& content_type,
                           bool enabled) {
  // Names this change, so that its return is recognised among other instances' changes.
  const std::string request =
      std::to_string(std::random_device{}()) + "-" + std::to_string(++next_request_);
  const uint64_t failed_before = producer_->failed();
  Status produced;
  if (!source) {
    produced = producer_->ProduceTombstone(options_.rules_topic, id);
  } else {
    std::string envelope = "{\"request\":";
    AppendJsonString(&envelope, request);
    envelope += ",\"enabled\":";
    envelope += enabled ? "true" : "false";
    envelope += ",\"content_type\":";
    AppendJsonString(&envelope, content_type);
    envelope += ",\"source\":";
    AppendJsonString(&envelope, *source);
    envelope += "}";
    produced = producer_->Produce(options_.rules_topic, id, envelope);
  }
  if (!produced.ok()) return produced;
  if (Status s = producer_->Flush(kTimeoutMs); !s.ok()) return s;
  if (producer_->failed() > failed_before) return Status::Unavailable("the rules topic did not take the change");
  // Applied on the way back, in the topic's order, with whatever others published before it.
  const int64_t deadline = SteadyClockMs() + kApplyWaitMs;
  while (SteadyClockMs() < deadline) {
    if (!reader_->Poll(100, &entries_).ok()) continue;
    bool mine = false;
    for (const kafka::TopicReader::Entry& entry : entries_) {
      const bool is_mine = Apply(entry, request) || (!source && entry.tombstone && entry.key == id);
      mine = mine || is_mine;
    }
    if (mine) return Status::Ok();
  }
  return Status::Unavailable("the change was published but has not come back from the rules topic yet");
}

}  // namespace vigil::server
