#pragma once
// RulesTopic: with Kafka, the patterns' source of truth is a compacted topic (record key: the
// pattern id; value: the document, or an envelope {"source","content_type","enabled"}; a
// tombstone deletes). Every instance reads all of it from the start with its own non-group
// reader and applies the changes in order (PatternRegistry::ApplyPublished), so all instances
// converge on the same patterns and a restarted one rebuilds them. A record's version is its
// offset + 1, the same on every instance. The REST API's changes are validated, published
// here, and answered once this instance has applied them. A record that is not a valid pattern
// (published by hand, say) is logged and counted, never applied.
// Not thread-safe: the server's thread.

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "common/status.h"
#include "kafka/kafka_client.h"
#include "server/pattern_registry.h"
#include "server/server_options.h"

namespace vigil::server {

class RulesTopic : public PatternRegistry::Publisher {
 public:
  RulesTopic(const ServerOptions::Kafka& options, PatternRegistry* registry);
  ~RulesTopic() override;

  // Creates the topic if absent (one partition: one order), opens the reader and the producer
  // and applies everything published so far, to the end of the topic; patterns stored here
  // that the topic does not hold are deleted (they were deleted while this instance was
  // down, or never published).
  Status Open();
  // Applies what was published since the last call, waiting up to `timeout_ms` for it.
  void Poll(int timeout_ms);

  Status Publish(const std::string& id, const std::string* source, const std::string& content_type,
                 bool enabled) override;

  uint64_t applied() const { return applied_; }
  uint64_t refused() const { return refused_; }

 private:
  // Applies one record; returns whether it carried `request` (a Publish of this instance).
  bool Apply(const kafka::TopicReader::Entry& entry, const std::string& request);

  ServerOptions::Kafka options_;
  PatternRegistry* registry_;
  std::unique_ptr<kafka::TopicReader> reader_;
  std::unique_ptr<kafka::Producer> producer_;
  std::vector<kafka::TopicReader::Entry> entries_;
  uint64_t next_request_ = 0;
  uint64_t applied_ = 0;
  uint64_t refused_ = 0;
  std::set<std::string> in_topic_;  // ids whose latest record is a document
};

}  // namespace vigil::server
