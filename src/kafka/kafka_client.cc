#include "kafka/kafka_client.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace vigil::kafka {
namespace {

constexpr size_t kErrorBytes = 512;

// librdkafka's configuration: the user's properties, then vigil's, which its guarantees need.
Result<rd_kafka_conf_t*> MakeConf(const Properties& properties, const Properties& ours) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[kErrorBytes];
  for (const Properties* set : {&properties, &ours}) {
    for (const auto& [name, value] : *set) {
      if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return Status::InvalidArgument("kafka property '" + name + "': " + error);
      }
    }
  }
  return conf;
}

Result<rd_kafka_t*> MakeClient(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char error[kErrorBytes];
  rd_kafka_t* rk = rd_kafka_new(type, conf, error, sizeof error);  // takes conf, also on error
  if (!rk) return Status::InvalidArgument(std::string("kafka client: ") + error);
  return rk;
}

// An rd_kafka_error_t as a Status (and destroyed): kFailedPrecondition when the transaction
// must be aborted, kUnavailable when the call may be retried, kInternal when the producer is
// unusable.
Status FromError(rd_kafka_error_t* error, std::string_view doing) {
  if (!error) return Status::Ok();
  std::string message = std::string(doing) + ": " + rd_kafka_error_string(error);
  Status s = rd_kafka_error_is_fatal(error)           ? Status::Internal(std::move(message))
             : rd_kafka_error_txn_requires_abort(error) ? Status::FailedPrecondition(std::move(message))
             : rd_kafka_error_is_retriable(error)      ? Status::Unavailable(std::move(message))
                                                       : Status::IoError(std::move(message));
  rd_kafka_error_destroy(error);
  return s;
}

Status FromCode(rd_kafka_resp_err_t err, std::string_view doing) {
  if (!err) return Status::Ok();
  return Status::Unavailable(std::string(doing) + ": " + rd_kafka_err2str(err));
}

}  // namespace

struct ConsumerCallbacks {
  static void Rebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                        void* opaque) {
    auto* consumer = static_cast<Consumer*>(opaque);
    ++consumer->rebalances_;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      consumer->Assign(partitions);
    } else {
      consumer->Revoke();
    }
  }
};

Result<std::unique_ptr<Consumer>> Consumer::Open(const Properties& properties, const std::string& group,
                                                 const std::string& instance, const std::vector<std::string>& topics,
                                                 StartOffset start, Revoked revoked) {
  // Offsets are committed with the output (transactions) or by vigil after it, never on their
  // own; only committed input is read.
  // What the consumer fetches ahead waits in memory while matching is behind (the input then
  // polls no more than the engine has room for): bounded unless the properties say otherwise.
  Properties bounded = properties;
  bounded.try_emplace("queued.max.messages.kbytes", std::to_string(kFetchAheadKiB));
  bounded.try_emplace("queued.min.messages", std::to_string(kFetchAheadRecords));
  Result<rd_kafka_conf_t*> conf = MakeConf(bounded, {{"group.id", group},
                                                        {"group.instance.id", instance},
                                                        {"enable.auto.commit", "false"},
                                                        {"enable.auto.offset.store", "false"},
                                                        {"isolation.level", "read_committed"},
                                                        {"auto.offset.reset", "earliest"},
                                                        {"partition.assignment.strategy", "range"}});
  if (!conf.ok()) return conf.status();
  std::unique_ptr<Consumer> consumer(new Consumer());
  consumer->start_ = std::move(start);
  consumer->revoked_ = std::move(revoked);
  rd_kafka_conf_set_rebalance_cb(*conf, &ConsumerCallbacks::Rebalance);
  rd_kafka_conf_set_opaque(*conf, consumer.get());
  Result<rd_kafka_t*> rk = MakeClient(RD_KAFKA_CONSUMER, *conf);
  if (!rk.ok()) return rk.status();
  consumer->rk_ = *rk;
  rd_kafka_poll_set_consumer(consumer->rk_);
  rd_kafka_topic_partition_list_t* subscription = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
  for (const std::string& topic : topics) rd_kafka_topic_partition_list_add(subscription, topic.c_str(), RD_KAFKA_PARTITION_UA);
  const rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer->rk_, subscription);
  rd_kafka_topic_partition_list_destroy(subscription);
  if (Status s = FromCode(err, "subscribing"); !s.ok()) return s;
  return consumer;
}

Consumer::~Consumer() {
  for (rd_kafka_message_t* m : polled_) rd_kafka_message_destroy(m);
  // Closing revokes the partitions: the owner, being destroyed, is not called back.
  start_ = nullptr;
  revoked_ = nullptr;
  if (rk_) {
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }
}

void Consumer::Assign(rd_kafka_topic_partition_list_t* partitions) {
  positions_.clear();
  for (int i = 0; i < partitions->cnt; ++i) {
    rd_kafka_topic_partition_t& p = partitions->elems[i];
    const Partition key{p.topic, p.partition};
    const int64_t start = start_ ? start_(key) : -1;
    if (start >= 0) p.offset = start;
    positions_[key] = start;  // -1 until the first record: the group's committed offset
  }
  rd_kafka_assign(rk_, partitions);
}

void Consumer::Revoke() {
  if (revoked_) {
    std::vector<Partition> partitions;
    for (const auto& [partition, position] : positions_) partitions.push_back(partition);
    revoked_(partitions);
  }
  positions_.clear();
  rd_kafka_assign(rk_, nullptr);
}

Partition* Consumer::Intern(std::string_view topic, int32_t partition) {
  Partition key{std::string(topic), partition};
  auto it = interned_.find(key);
  if (it == interned_.end()) it = interned_.emplace(key, std::make_unique<Partition>(key)).first;
  return it->second.get();
}

Status Consumer::Poll(size_t max, int timeout_ms, std::vector<Record>* out) {
  for (rd_kafka_message_t* m : polled_) rd_kafka_message_destroy(m);
  polled_.clear();
  out->clear();
  uint64_t rebalances = rebalances_;
  while (out->size() < max) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, out->empty() ? timeout_ms : 0);
    if (rebalances != rebalances_) {
      // The assignment decided where each partition starts without these: they come again.
      for (rd_kafka_message_t* taken : polled_) rd_kafka_message_destroy(taken);
      polled_.clear();
      out->clear();
      rebalances = rebalances_;
    }
    if (!m) break;
    if (m->err) {
      const rd_kafka_resp_err_t err = m->err;
      const std::string text = rd_kafka_message_errstr(m);
      rd_kafka_message_destroy(m);
      if (err == RD_KAFKA_RESP_ERR__FATAL) return Status::Internal("kafka consumer: " + text);
      continue;  // transient (broker down, partition EOF...): librdkafka retries
    }
    polled_.push_back(m);
    Partition* partition = Intern(rd_kafka_topic_name(m->rkt), m->partition);
    positions_[*partition] = m->offset + 1;
    out->push_back({partition, m->offset, rd_kafka_message_timestamp(m, nullptr),
                    std::string_view(static_cast<const char*>(m->key), m->key ? m->key_len : 0),
                    std::string_view(static_cast<const char*>(m->payload), m->payload ? m->len : 0)});
  }
  return Status::Ok();
}

namespace {

// A partition list of `offsets`, each with `metadata`; the caller destroys it.
rd_kafka_topic_partition_list_t* OffsetList(const Offsets& offsets, const std::string& metadata) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const auto& [partition, offset] : offsets) {
    rd_kafka_topic_partition_t* p = rd_kafka_topic_partition_list_add(list, partition.topic.c_str(), partition.partition);
    p->offset = offset;
    p->metadata = std::malloc(metadata.size());  // freed with the list
    std::memcpy(p->metadata, metadata.data(), metadata.size());
    p->metadata_size = metadata.size();
  }
  return list;
}

}  // namespace

Status Consumer::Commit(const Offsets& offsets, const std::string& metadata) {
  if (offsets.empty()) return Status::Ok();
  rd_kafka_topic_partition_list_t* list = OffsetList(offsets, metadata);
  const rd_kafka_resp_err_t err = rd_kafka_commit(rk_, list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  return FromCode(err, "committing offsets");
}

Result<std::map<Partition, std::pair<int64_t, std::string>>> Consumer::Committed(
    const std::vector<Partition>& partitions, int timeout_ms) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (const Partition& p : partitions) rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition);
  const rd_kafka_resp_err_t err = rd_kafka_committed(rk_, list, timeout_ms);
  std::map<Partition, std::pair<int64_t, std::string>> out;
  for (int i = 0; i < list->cnt && !err; ++i) {
    const rd_kafka_topic_partition_t& p = list->elems[i];
    out[{p.topic, p.partition}] = {p.offset, std::string(static_cast<const char*>(p.metadata), p.metadata ? p.metadata_size : 0)};
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (Status s = FromCode(err, "reading committed offsets"); !s.ok()) return s;
  return out;
}

namespace {

// A topic just created may be unknown to the broker asked for a moment: asked again until
// `timeout_ms` has passed.
Result<std::vector<Partition>> TopicPartitions(rd_kafka_t* rk, const std::vector<std::string>& topics, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<Partition> out;
  for (const std::string& topic : topics) {
    rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    do {
      if (topic_err) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
      const rd_kafka_metadata_t* metadata = nullptr;
      const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &metadata, timeout_ms);
      topic_err = !err && metadata->topic_cnt == 1 ? metadata->topics[0].err : err;
      if (!topic_err) {
        for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
          out.push_back({topic, metadata->topics[0].partitions[i].id});
        }
      }
      if (metadata) rd_kafka_metadata_destroy(metadata);
      rd_kafka_topic_destroy(rkt);
    } while ((topic_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || topic_err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) &&
             std::chrono::steady_clock::now() < deadline);
    if (Status s = FromCode(topic_err, "reading the partitions of " + topic); !s.ok()) return s;
  }
  return out;
}

}  // namespace

Result<std::vector<Partition>> Consumer::PartitionsOf(const std::vector<std::string>& topics, int timeout_ms) {
  return TopicPartitions(rk_, topics, timeout_ms);
}

std::map<Partition, int64_t> Consumer::Lag() {
  std::map<Partition, int64_t> lag;
  for (const auto& [partition, position] : positions_) {
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(rk_, partition.topic.c_str(), partition.partition, &low, &high) ||
        high < 0) {
      continue;
    }
    lag[partition] = position < 0 ? high - low : std::max<int64_t>(0, high - position);
  }
  return lag;
}

struct Producer::Counters {
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
};

struct ProducerCallbacks {
  static void Delivered(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* counters = static_cast<Producer::Counters*>(opaque);
    ++(m->err ? counters->failed : counters->delivered);
  }
};

Result<std::unique_ptr<Producer>> Producer::Open(const Properties& properties, const std::string& transactional_id) {
  Properties ours = {{"enable.idempotence", "true"}, {"linger.ms", "5"}};
  if (!transactional_id.empty()) ours["transactional.id"] = transactional_id;
  Result<rd_kafka_conf_t*> conf = MakeConf(properties, ours);
  if (!conf.ok()) return conf.status();
  std::unique_ptr<Producer> producer(new Producer());
  producer->counters_ = std::make_unique<Counters>();
  producer->transactional_ = !transactional_id.empty();
  rd_kafka_conf_set_dr_msg_cb(*conf, &ProducerCallbacks::Delivered);
  rd_kafka_conf_set_opaque(*conf, producer->counters_.get());
  Result<rd_kafka_t*> rk = MakeClient(RD_KAFKA_PRODUCER, *conf);
  if (!rk.ok()) return rk.status();
  producer->rk_ = *rk;
  if (producer->transactional_) {
    // Fences off an earlier incarnation with the same id and aborts what it left open.
    if (Status s = FromError(rd_kafka_init_transactions(producer->rk_, 60000), "initialising transactions"); !s.ok()) {
      return s;
    }
  }
  return producer;
}

Producer::~Producer() {
  if (rk_) rd_kafka_destroy(rk_);
}

Status Producer::Produce(const std::string& topic, std::string_view key, std::string_view value,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
  while (true) {
    rd_kafka_headers_t* hdrs = nullptr;
    if (!headers.empty()) {
      hdrs = rd_kafka_headers_new(headers.size());
      for (const auto& [name, text] : headers) {
        rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), text.data(),
                            static_cast<ssize_t>(text.size()));
      }
    }
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (!err) return Status::Ok();
    if (hdrs) rd_kafka_headers_destroy(hdrs);  // not taken on error
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return FromCode(err, "producing to " + topic);
    rd_kafka_poll(rk_, 10);  // back-pressure: wait for acknowledgements to make room
  }
}

Status Producer::ProduceTombstone(const std::string& topic, std::string_view key) {
  const rd_kafka_resp_err_t err =
      rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()), RD_KAFKA_V_VALUE(nullptr, 0),
                        RD_KAFKA_V_END);
  return FromCode(err, "producing to " + topic);
}

Status Producer::Flush(int timeout_ms) { return FromCode(rd_kafka_flush(rk_, timeout_ms), "flushing"); }

void Producer::Serve() { rd_kafka_poll(rk_, 0); }

uint64_t Producer::delivered() const { return counters_->delivered; }
uint64_t Producer::failed() const { return counters_->failed; }

Status Producer::BeginTransaction() {
  offsets_sent_ = false;
  return FromError(rd_kafka_begin_transaction(rk_), "beginning a transaction");
}

Status Producer::CommitTransaction(Consumer* consumer, const Offsets& offsets, const std::string& metadata,
                                   int timeout_ms) {
  if (!offsets.empty() && !offsets_sent_) {
    rd_kafka_topic_partition_list_t* list = OffsetList(offsets, metadata);
    rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer->handle());
    Status sent = FromError(rd_kafka_send_offsets_to_transaction(rk_, list, group, timeout_ms), "committing offsets");
    rd_kafka_consumer_group_metadata_destroy(group);
    rd_kafka_topic_partition_list_destroy(list);
    if (!sent.ok()) return sent;
    offsets_sent_ = true;
  }
  return FromError(rd_kafka_commit_transaction(rk_, timeout_ms), "committing a transaction");
}

Status Producer::AbortTransaction(int timeout_ms) {
  return FromError(rd_kafka_abort_transaction(rk_, timeout_ms), "aborting a transaction");
}

Status CreateTopics(const Properties& properties, const std::vector<TopicSpec>& topics, int timeout_ms) {
  Result<rd_kafka_conf_t*> conf = MakeConf(properties, {});
  if (!conf.ok()) return conf.status();
  Result<rd_kafka_t*> rk = MakeClient(RD_KAFKA_PRODUCER, *conf);
  if (!rk.ok()) return rk.status();
  std::vector<rd_kafka_NewTopic_t*> specs;
  char error[kErrorBytes];
  Status status;
  for (const TopicSpec& t : topics) {
    rd_kafka_NewTopic_t* spec =
        rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication_factor, error, sizeof error);
    if (!spec) {
      status = Status::InvalidArgument("topic " + t.name + ": " + error);
      break;
    }
    if (t.compacted) rd_kafka_NewTopic_set_config(spec, "cleanup.policy", "compact");
    specs.push_back(spec);
  }
  if (status.ok()) {
    rd_kafka_queue_t* queue = rd_kafka_queue_new(*rk);
    rd_kafka_CreateTopics(*rk, specs.data(), specs.size(), nullptr, queue);
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, timeout_ms);
    const rd_kafka_CreateTopics_result_t* result = event ? rd_kafka_event_CreateTopics_result(event) : nullptr;
    if (!result) {
      status = Status::Unavailable(event ? std::string("creating topics: ") + rd_kafka_event_error_string(event)
                                         : std::string("creating topics: no answer from the cluster"));
    } else {
      size_t count = 0;
      const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
      for (size_t i = 0; i < count && status.ok(); ++i) {
        const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
          status = Status::Unavailable(std::string("creating topic ") + rd_kafka_topic_result_name(results[i]) +
                                       ": " + rd_kafka_err2str(err));
        }
      }
    }
    if (event) rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
  }
  for (rd_kafka_NewTopic_t* spec : specs) rd_kafka_NewTopic_destroy(spec);
  rd_kafka_destroy(*rk);
  return status;
}

Result<std::unique_ptr<TopicReader>> TopicReader::Open(const Properties& properties, const std::string& topic,
                                                       int timeout_ms) {
  // Partitions assigned, never subscribed: every reader gets every record, from the start.
  // librdkafka wants a group id all the same; one of its own joins no group.
  Result<rd_kafka_conf_t*> conf = MakeConf(properties, {{"group.id", "vigil-reader-" + topic},
                                                        {"enable.partition.eof", "true"},
                                                        {"enable.auto.commit", "false"},
                                                        {"enable.auto.offset.store", "false"}});
  if (!conf.ok()) return conf.status();
  Result<rd_kafka_t*> rk = MakeClient(RD_KAFKA_CONSUMER, *conf);
  if (!rk.ok()) return rk.status();
  std::unique_ptr<TopicReader> reader(new TopicReader());
  reader->rk_ = *rk;
  rd_kafka_poll_set_consumer(reader->rk_);
  Result<std::vector<Partition>> partitions = TopicPartitions(reader->rk_, {topic}, timeout_ms);
  if (!partitions.ok()) return partitions.status();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions->size()));
  for (const Partition& p : *partitions) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p.partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
    reader->at_end_[p.partition] = false;
  }
  const rd_kafka_resp_err_t err = rd_kafka_assign(reader->rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (Status s = FromCode(err, "reading " + topic); !s.ok()) return s;
  return reader;
}

TopicReader::~TopicReader() {
  for (rd_kafka_message_t* m : polled_) rd_kafka_message_destroy(m);
  if (rk_) {
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }
}

Status TopicReader::Poll(int timeout_ms, std::vector<Entry>* out) {
  for (rd_kafka_message_t* m : polled_) rd_kafka_message_destroy(m);
  polled_.clear();
  out->clear();
  while (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, out->empty() ? timeout_ms : 0)) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) at_end_[m->partition] = true;
      rd_kafka_message_destroy(m);
      continue;
    }
    at_end_[m->partition] = false;
    polled_.push_back(m);
    out->push_back({std::string_view(static_cast<const char*>(m->key), m->key ? m->key_len : 0),
                    std::string_view(static_cast<const char*>(m->payload), m->payload ? m->len : 0),
                    m->payload == nullptr, m->partition, m->offset});
  }
  return Status::Ok();
}

bool TopicReader::at_end() const {
  for (const auto& [partition, at_end] : at_end_) {
    if (!at_end) return false;
  }
  return true;
}

}  // namespace vigil::kafka
