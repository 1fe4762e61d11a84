#pragma once
// Kafka clients for vigil, on librdkafka: a consumer of the input topics (one consumer group),
// a producer of alerts, dead letters and late events (transactional for exactly-once), topic
// creation, and a reader of the whole rules topic. librdkafka's errors become Status values
// at this edge. Knows nothing of events, patterns or state: records are bytes.
//
// Every client takes `Properties`: librdkafka configuration passed through as given
// (bootstrap.servers, security.protocol, sasl.*, ssl.*, ...); vigil sets only what its
// guarantees need (group, isolation, transactions, no auto commit) on top, and a bound on
// what the consumer fetches ahead unless the properties set one.
//
// Thread safety: Producer::Produce may be called from any thread; everything else belongs to
// the thread that drives the client.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

struct rd_kafka_s;
struct rd_kafka_message_s;
struct rd_kafka_topic_partition_list_s;

namespace vigil::kafka {

using Properties = std::map<std::string, std::string>;

// One partition of one topic.
struct Partition {
  std::string topic;
  int32_t partition = 0;
  bool operator<(const Partition& o) const {
    return topic != o.topic ? topic < o.topic : partition < o.partition;
  }
  bool operator==(const Partition& o) const = default;
};

// Next offsets to read, by partition.
using Offsets = std::map<Partition, int64_t>;

// A record read; its views are valid until the next Poll.
struct Record {
  Partition* partition;  // the consumer's, stable
  int64_t offset;
  int64_t timestamp_ms;
  std::string_view key;
  std::string_view value;
};

class Consumer {
 public:
  // What the consumer may fetch ahead of Poll, unless the properties set it: librdkafka's
  // queued.max.messages.kbytes and queued.min.messages. Once either is reached, the librdkafka
  // of Debian 12 (2.0) fetches nothing more for up to a second (the backoff that later versions
  // made fetch.queue.backoff.ms), so the fetch-ahead must hold more than a second of input at
  // the rate the engine matches: with 16 MiB, a backlog was read in bursts of 100k records a
  // second, whatever the engine's speed. 64 MiB is librdkafka's own default.
  static constexpr int kFetchAheadKiB = 65536;
  static constexpr int kFetchAheadRecords = 500000;
  // Decides where a newly assigned partition starts: the offset, or a negative value to use
  // the group's committed offset (or the earliest, when there is none).
  using StartOffset = std::function<int64_t(const Partition& partition)>;
  // Called before partitions are taken away (a rebalance), while their offsets may still be
  // committed.
  using Revoked = std::function<void(const std::vector<Partition>& partitions)>;

  // Joins `group` on `topics` as the static member `instance` (a restarted process takes its
  // partitions back at once, without waiting for the group to notice the old one gone),
  // reading committed records only (read_committed).
  static Result<std::unique_ptr<Consumer>> Open(const Properties& properties, const std::string& group,
                                                const std::string& instance, const std::vector<std::string>& topics,
                                                StartOffset start, Revoked revoked);
  ~Consumer();

  // The records that arrive within `timeout_ms` (at most `max`; 0 timeout: those already
  // fetched). Records taken before a rebalance that happens during the call are dropped: the
  // partitions start again where StartOffset said, so they come again if they are still ours.
  // Errors: a fatal consumer error (transient broker errors are retried inside).
  Status Poll(size_t max, int timeout_ms, std::vector<Record>* out);

  // The partitions assigned now, each with the next offset to read (after the last record
  // polled, or where it started).
  const Offsets& positions() const { return positions_; }
  // Commits `offsets` as the group's, with `metadata` (at-least-once: after the output).
  Status Commit(const Offsets& offsets, const std::string& metadata);
  // The group's committed offsets of `partitions` and the metadata committed with them.
  Result<std::map<Partition, std::pair<int64_t, std::string>>> Committed(const std::vector<Partition>& partitions,
                                                                         int timeout_ms);
  // The partitions of `topics` (from the cluster's metadata).
  Result<std::vector<Partition>> PartitionsOf(const std::vector<std::string>& topics, int timeout_ms);
  // How far behind the end of each assigned partition the consumer is (from the last fetch).
  std::map<Partition, int64_t> Lag();
  uint64_t rebalances() const { return rebalances_; }

  rd_kafka_s* handle() { return rk_; }

 private:
  friend struct ConsumerCallbacks;
  Consumer() = default;
  void Assign(rd_kafka_topic_partition_list_s* partitions);
  void Revoke();
  Partition* Intern(std::string_view topic, int32_t partition);

  rd_kafka_s* rk_ = nullptr;
  StartOffset start_;
  Revoked revoked_;
  Offsets positions_;
  std::map<Partition, std::unique_ptr<Partition>> interned_;
  std::vector<rd_kafka_message_s*> polled_;  // released at the next Poll
  uint64_t rebalances_ = 0;
};

class Producer {
 public:
  // `transactional_id` empty: an idempotent producer without transactions.
  static Result<std::unique_ptr<Producer>> Open(const Properties& properties, const std::string& transactional_id);
  ~Producer();

  // Queues one record (copied). Waits while librdkafka's queue is full. Thread-safe.
  Status Produce(const std::string& topic, std::string_view key, std::string_view value,
                 const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Queues a tombstone (no value) for `key`: a deletion in a compacted topic.
  Status ProduceTombstone(const std::string& topic, std::string_view key);
  // Waits until every queued record is acknowledged (or `timeout_ms` passes).
  Status Flush(int timeout_ms);

  // Transactions (a transactional producer only): begin; commit the records produced since
  // and, in the same transaction, `offsets` as `consumer`'s group offsets with `metadata`.
  // A commit that fails with kUnavailable (timed out) may be called again with the same
  // arguments, and resumes where it stopped; kFailedPrecondition: abort, then begin again.
  Status BeginTransaction();
  Status CommitTransaction(Consumer* consumer, const Offsets& offsets, const std::string& metadata,
                           int timeout_ms);
  Status AbortTransaction(int timeout_ms);
  bool transactional() const { return transactional_; }

  // Serves delivery reports (counted below); call now and then from the driving thread.
  void Serve();
  uint64_t delivered() const;
  uint64_t failed() const;

 private:
  friend struct ProducerCallbacks;
  Producer() = default;
  rd_kafka_s* rk_ = nullptr;
  bool transactional_ = false;
  bool offsets_sent_ = false;  // in the open transaction
  struct Counters;
  std::unique_ptr<Counters> counters_;
};

struct TopicSpec {
  std::string name;
  int partitions = 1;
  int replication_factor = 1;
  bool compacted = false;
};

// Creates the topics that do not exist yet; existing ones are left as they are.
Status CreateTopics(const Properties& properties, const std::vector<TopicSpec>& topics, int timeout_ms);

// Reads every record of `topic` from its beginning, on all its partitions, outside any group
// (so every instance reads all of it), and then follows it.
class TopicReader {
 public:
  static Result<std::unique_ptr<TopicReader>> Open(const Properties& properties, const std::string& topic,
                                                   int timeout_ms);
  ~TopicReader();
  // The records that arrived within `timeout_ms`; `value` empty and `tombstone` set for a
  // deletion. Views valid until the next Poll.
  struct Entry {
    std::string_view key;
    std::string_view value;
    bool tombstone;
    int32_t partition;
    int64_t offset;
  };
  Status Poll(int timeout_ms, std::vector<Entry>* out);
  // Every partition was read to its end (as it was when the last Poll got there).
  bool at_end() const;

 private:
  TopicReader() = default;
  rd_kafka_s* rk_ = nullptr;
  std::map<int32_t, bool> at_end_;  // by partition
  std::vector<rd_kafka_message_s*> polled_;
};

}  // namespace vigil::kafka
