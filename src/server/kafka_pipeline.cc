#include "server/kafka_pipeline.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

#include "common/byte_codec.h"
#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {
namespace {

constexpr int kAdminTimeoutMs = 30000;
constexpr int kCommitTimeoutMs = 60000;
// How long CommitNow waits, once serving, before it reports the broker as away.
constexpr int kCommitNowWaitMs = 10000;
constexpr int kRetryMs = 1000;
constexpr int kProbeMs = 2000;
constexpr size_t kMaxBatch = 2000;
// Control records of the pipeline in the input log (Durability's pattern changes start with
// 'l' or 'g'): where the partitions stand, and a partition going idle or active.
constexpr char kSourcesControl = 'p';
constexpr char kOldSourcesControl = 'o';  // before partitions without a record were listed
constexpr char kIdleControl = 'i';

void Log(const std::string& what) { std::fprintf(stderr, "vigil: kafka: %s\n", what.c_str()); }

// The record key of an alert: the pattern's key value, a string without its JSON quotes.
std::string_view KeyBytes(std::string_view key_json) {
  if (key_json.size() >= 2 && key_json.front() == '"' && key_json.back() == '"' &&
      key_json.find('\\') == std::string_view::npos) {
    return key_json.substr(1, key_json.size() - 2);
  }
  return key_json;
}

}  // namespace

KafkaPipeline::KafkaPipeline(const ServerOptions::Kafka& options, bool sync_input_log, boost::asio::io_context& io,
                             engine::ShardedMatcher* matcher, Durability* durability, AlertLog* alerts)
    : options_(options), sync_input_log_(sync_input_log), io_(io), timer_(io), matcher_(matcher), durability_(durability), alerts_(alerts),
      passed_(matcher->workers()) {}

KafkaPipeline::~KafkaPipeline() {
  // Workers may still be matching (a commit gave up waiting for them): their output, and the
  // marks a commit may wait for, come here until they are done; then nothing more does.
  matcher_->Sync();
  alerts_->Forward(nullptr);
  // The threads of a commit or a probe still running use the members: they finish first.
  if (commit_.valid()) commit_.wait();
  if (probe_.valid()) probe_.wait();
}

Status KafkaPipeline::Prepare() {
  kafka::Properties properties = options_.properties;
  properties["bootstrap.servers"] = options_.brokers;
  std::vector<kafka::TopicSpec> topics;
  for (const std::string& t : options_.input_topics) {
    topics.push_back({t, options_.topic_partitions, options_.replication_factor, false});
  }
  for (const std::string* t : {&options_.alerts_topic, &options_.dead_letter_topic, &options_.late_topic}) {
    topics.push_back({*t, options_.topic_partitions, options_.replication_factor, false});
  }
  if (Status s = kafka::CreateTopics(properties, topics, kAdminTimeoutMs); !s.ok()) return s;

  // One name for this instance: its transactional id and its static group membership.
  instance_ = !options_.transactional_id.empty() ? options_.transactional_id : "vigil-" + options_.group_id;
  Result<std::unique_ptr<kafka::Producer>> producer =
      kafka::Producer::Open(properties, options_.exactly_once ? instance_ : "");
  if (!producer.ok()) return producer.status();
  producer_ = std::move(*producer);

  Result<std::unique_ptr<kafka::Consumer>> consumer = kafka::Consumer::Open(
      properties, options_.group_id, instance_, options_.input_topics, [this](const kafka::Partition& p) -> int64_t {
        // Resume after the last record logged; a partition never logged starts where the
        // group committed.
        auto it = logged_offsets_.find(p);
        // A new partition holds the watermark back until it delivers or goes idle.
        SetIdle(SourceOf(p), false);
        return it == logged_offsets_.end() || it->second < 0 ? -1 : it->second;
      },
      [this](const std::vector<kafka::Partition>& partitions) { Revoked(partitions); });
  if (!consumer.ok()) return consumer.status();
  consumer_ = std::move(*consumer);

  // The input position up to which the output is committed, as the last transaction said.
  Result<std::vector<kafka::Partition>> partitions = consumer_->PartitionsOf(options_.input_topics, kAdminTimeoutMs);
  if (!partitions.ok()) return partitions.status();
  Result<std::map<kafka::Partition, std::pair<int64_t, std::string>>> committed =
      consumer_->Committed(*partitions, kAdminTimeoutMs);
  if (!committed.ok()) return committed.status();
  // Only this instance's commits say where its own input log stands (other instances of the
  // group number their input their own way).
  for (const auto& [partition, offset_and_metadata] : *committed) {
    std::string_view metadata = offset_and_metadata.second;
    if (metadata.starts_with(instance_ + ":")) {
      metadata.remove_prefix(instance_.size() + 1);
    } else if (metadata.find(':') != std::string_view::npos) {
      continue;  // (a bare position: written before positions were tagged, by the one instance)
    }
    uint64_t position = 0;
    if (std::from_chars(metadata.data(), metadata.data() + metadata.size(), position).ec == std::errc()) {
      committed_position_ = std::max(committed_position_, position);
    }
  }

  if (producer_->transactional()) {
    if (Status s = producer_->BeginTransaction(); !s.ok()) return s;
  }
  quiet_ = committed_position_ > 0;
  Durability::ReplayHooks hooks;
  hooks.before_record = [this](uint64_t position) {
    if (quiet_ && position > committed_position_) {
      matcher_->Sync();  // the output up to here is the committed one; from here it is new
      quiet_ = false;
    }
  };
  hooks.control = [this](std::string_view control) { return ReplayControl(control); };
  durability_->SetReplayHooks(std::move(hooks));
  durability_->SetBeforeCheckpoint([this] { return CommitNow(); });
  durability_->KeepAfterCommit();
  durability_->SetInputProgress([this] { return EncodeSources(); });
  alerts_->Forward(this);
  return Status::Ok();
}

Status KafkaPipeline::Start() {
  if (quiet_) {
    matcher_->Sync();
    quiet_ = false;
  }
  // Restored sources that no partition of this run feeds go idle after the timeout, like any.
  for (const auto& [partition, source] : sources_) {
    if (!last_record_ms_.contains(source)) last_record_ms_[source] = SteadyClockMs();
    idle_.try_emplace(source, false);
  }
  if (Status s = CommitNow(); !s.ok()) return s;
  ready_ = true;
  serving_ = true;
  ScheduleTick(0);
  return Status::Ok();
}

void KafkaPipeline::Stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  timer_.cancel(ignored);
}

uint32_t KafkaPipeline::SourceOf(const kafka::Partition& partition) {
  auto it = sources_.find(partition);
  if (it == sources_.end()) {
    uint32_t next = 0;
    for (const auto& [p, source] : sources_) next = std::max(next, source + 1);
    it = sources_.emplace(partition, next).first;
  }
  return it->second;
}

// 'p', then per partition: topic, partition, source number, next offset to read (-1: none
// logged yet). ('o', the earlier form, listed only partitions with an offset, unsigned.)
std::string KafkaPipeline::EncodeSources() const {
  std::string out(1, kSourcesControl);
  PutVarint(&out, sources_.size());
  for (const auto& [partition, source] : sources_) {
    PutBytes(&out, partition.topic);
    PutVarint(&out, static_cast<uint64_t>(partition.partition));
    PutVarint(&out, source);
    const auto offset = logged_offsets_.find(partition);
    PutSignedVarint(&out, offset == logged_offsets_.end() ? -1 : offset->second);
  }
  return out;
}

Status KafkaPipeline::ReplayControl(std::string_view control) {
  if (control.empty()) return Status::Corruption("an empty control record in the input log");
  if (control[0] == kIdleControl && control.size() > 2) {
    uint32_t source = 0;
    std::from_chars(control.data() + 2, control.data() + control.size(), source);
    matcher_->SetSourceIdle(source, control[1] != '\0');
    idle_[source] = control[1] != '\0';
    return Status::Ok();
  }
  if (control[0] != kSourcesControl && control[0] != kOldSourcesControl) {
    return Status::Corruption("an unknown control record in the input log");
  }
  ByteReader in(control.substr(1));
  const uint64_t count = in.Below(control.size());
  sources_.clear();
  logged_offsets_.clear();
  for (uint64_t i = 0; i < count && in.ok(); ++i) {
    kafka::Partition partition{std::string(in.Bytes()), static_cast<int32_t>(in.Varint())};
    const auto source = static_cast<uint32_t>(in.Varint());
    const int64_t offset = control[0] == kOldSourcesControl ? static_cast<int64_t>(in.Varint()) : in.SignedVarint();
    sources_[partition] = source;
    if (offset >= 0) logged_offsets_[partition] = offset;
  }
  return in.done() ? Status::Ok() : Status::Corruption("an unreadable sources record in the input log");
}

void KafkaPipeline::SetIdle(uint32_t source, bool idle) {
  if (!durability_->LogControl(std::string{kIdleControl, idle ? '\1' : '\0'} + std::to_string(source)).ok()) return;
  matcher_->SetSourceIdle(source, idle);
  idle_[source] = idle;
  last_record_ms_[source] = SteadyClockMs();
}

// Before the group takes partitions away: their output and offsets are committed while this
// instance may still commit them.
void KafkaPipeline::Revoked(const std::vector<kafka::Partition>& partitions) {
  if (Status s = CommitNow(); !s.ok()) {
    Log("partitions revoked before their output was committed: " + s.message());
    return;
  }
  // Whoever gets them next starts at the group's offsets; should they come back here, so
  // does this instance. They stay sources until they go idle (a partition taken away and
  // given back at once, as an eager rebalance does, must not let the watermark jump).
  for (const kafka::Partition& p : partitions) logged_offsets_.erase(p);
}

void KafkaPipeline::ScheduleTick(int delay_ms) {
  if (stopped_) return;
  timer_.expires_after(std::chrono::milliseconds(delay_ms));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void KafkaPipeline::Tick() {
  producer_->Serve();
  Probe();
  if (commit_.valid() && commit_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) FinishCommit();
  if (resume_commit_ || begin_transaction_) {
    // Nothing may go into the transaction until it is through.
    if (!commit_.valid() && SteadyClockMs() - last_commit_ms_ >= kRetryMs) StartCommit();
    return ScheduleTick(commit_.valid() ? 2 : kRetryMs);
  }
  // While a commit runs the input goes on, its output held for the next transaction.
  // Back-pressure: no more is taken than the engine has room for now, so this thread never
  // waits for the workers; the rest waits in Kafka and in the consumer's bounded fetch-ahead.
  const size_t take = std::min(kMaxBatch, matcher_->room_now());
  if (take == 0) ++input_waits_;
  // A batch the input log did not take is taken again before anything new.
  Status polled = unlogged_ ? Status::Ok() : consumer_->Poll(take, 0, &records_);
  if (polled.ok() && !records_.empty()) {
    polled = Ingest(records_);
    unlogged_ = !polled.ok();
  }
  input_failed_ = !polled.ok();
  if (input_failed_) {
    // Kept up and retried: the broker or the disk may come back; /readyz says not ready.
    Report(polled);
    return ScheduleTick(kRetryMs);
  }
  // A partition is quiet only if the consumer had nothing more to give: when the poll took all
  // the room allowed, its records may be waiting behind others'.
  if (take > 0 && records_.size() < take) MarkIdle();
  // (Asked again: the poll may have started a commit, for partitions taken away.)
  if (!commit_.valid() && SteadyClockMs() - last_commit_ms_ >= options_.commit_interval_ms && Uncommitted()) {
    StartCommit();
  }
  ScheduleTick(take > 0 && records_.size() == take ? 0 : 1);
}

void KafkaPipeline::Probe() {
  if (probe_.valid()) {
    if (probe_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    reachable_ = probe_.get();
  }
  if (SteadyClockMs() - last_probe_ms_ < kProbeMs) return;
  last_probe_ms_ = SteadyClockMs();
  probe_ = std::async(std::launch::async,
                      [this] { return consumer_->PartitionsOf(options_.input_topics, kProbeMs).ok(); });
}

void KafkaPipeline::Report(const Status& status) {
  if (status.message() != last_error_) Log(status.message());
  last_error_ = status.message();
}

void KafkaPipeline::Failed(const Status& status) {
  Report(status);
  ready_ = false;
}

Status KafkaPipeline::Ingest(const std::vector<kafka::Record>& records) {
  const int64_t entered = std::chrono::steady_clock::now().time_since_epoch().count();
  const int64_t now = SteadyClockMs();
  batch_.clear();
  stamped_.resize(options_.record_time ? records.size() : 0);
  for (size_t i = 0; i < records.size(); ++i) {
    const kafka::Record& r = records[i];
    const uint32_t source = SourceOf(*r.partition);
    std::string_view text = TrimJsonWhitespace(r.value);
    if (options_.record_time && text.starts_with('{')) {
      std::string& stamped = stamped_[i];
      stamped.assign("{\"");
      stamped.append(kRecordTimeField);
      stamped.append("\":");
      stamped.append(std::to_string(r.timestamp_ms));
      if (TrimJsonWhitespace(text.substr(1)) != "}") stamped.push_back(',');
      stamped.append(text.substr(1));
      text = stamped;
    }
    batch_.emplace_back(source, text);
  }
  // The control record says where the partitions stand after the batch; they stand there
  // only once it is logged.
  const std::map<kafka::Partition, int64_t> before = logged_offsets_;
  for (const kafka::Record& r : records) logged_offsets_[*r.partition] = r.offset + 1;
  Result<uint64_t> first = durability_->LogSourcedEvents(batch_, EncodeSources());
  if (!first.ok()) {
    logged_offsets_ = before;
    return first.status();
  }
  for (const auto& [source, text] : batch_) {
    last_record_ms_[source] = now;
    idle_[source] = false;  // the engine makes a source active again with its event
  }
  for (size_t k = 0; k < batch_.size(); ++k) matcher_->Add(batch_[k].second, *first + k, entered, batch_[k].first);
  matcher_->Flush();
  records_in_ += records.size();
  return Status::Ok();
}

void KafkaPipeline::MarkIdle() {
  const int64_t now = SteadyClockMs();
  for (auto& [source, idle] : idle_) {
    if (!idle && now - last_record_ms_[source] >= options_.idle_partition_ms) SetIdle(source, true);
  }
}

bool KafkaPipeline::Uncommitted() {
  if (commits_ == 0 || durability_->last_position() != committed_position_) return true;
  const std::lock_guard lock(output_mutex_);
  return !open_output_.empty();
}

void KafkaPipeline::StartCommit() {
  last_commit_ms_ = SteadyClockMs();
  if (begin_transaction_) {
    if (Status s = producer_->BeginTransaction(); !s.ok()) return Failed(s);
    begin_transaction_ = false;
    ReleaseHeldOutput();
  }
  // A commit that timed out is resumed as it was: its offsets and position, not today's.
  if (!resume_commit_) {
    commit_started_ = std::chrono::steady_clock::now();
    // Dead letters and late events of the input so far are produced before the mark.
    matcher_->Flush();
    // Kafka is about to be told this input was read: the log must keep it through a power loss.
    if (sync_input_log_) {
      if (Status s = durability_->SyncInputLog(); !s.ok()) return Failed(s);
    }
    committing_position_ = durability_->last_position();
    // The offsets after the last record logged, of the partitions still ours (before the
    // first assignment, those this instance had).
    committing_offsets_.clear();
    for (const auto& [partition, offset] : logged_offsets_) {
      if (consumer_->rebalances() == 0 || consumer_->positions().contains(partition)) {
        committing_offsets_.emplace(partition, offset);
      }
    }
    {
      const std::lock_guard lock(output_mutex_);
      // A committing transaction takes no more records after the mark; without one, output
      // goes on.
      hold_output_ = producer_->transactional();
      committing_mark_ = ++marks_;
    }
    matcher_->Mark(committing_mark_);
  }
  commit_ = std::async(std::launch::async, [this, mark = committing_mark_,
                                             metadata = instance_ + ":" + std::to_string(committing_position_)] {
    AwaitMark(mark);
    return CommitOutput(committing_offsets_, metadata);
  });
}

void KafkaPipeline::AwaitMark(uint64_t mark) {
  std::unique_lock lock(output_mutex_);
  passed_changed_.wait(lock, [&] {
    return std::all_of(passed_.begin(), passed_.end(), [mark](uint64_t p) { return p >= mark; });
  });
}

void KafkaPipeline::Passed(size_t worker, uint64_t mark) {
  {
    const std::lock_guard lock(output_mutex_);
    passed_[worker] = mark;
  }
  passed_changed_.notify_all();
}

Status KafkaPipeline::Send(const Output& output) {
  return producer_->Produce(*output.topic, output.key, output.value, output.headers);
}

void KafkaPipeline::ReleaseHeldOutput() {
  const std::lock_guard lock(output_mutex_);
  hold_output_ = false;
  for (Output& o : held_output_) {
    if (Status s = Send(o); !s.ok()) Log(s.message());
    open_output_.push_back(std::move(o));
  }
  held_output_.clear();
}

Status KafkaPipeline::CommitOutput(const kafka::Offsets& offsets, const std::string& metadata) {
  if (!producer_->transactional()) {
    Status s = producer_->Flush(kCommitTimeoutMs);
    if (s.ok() && producer_->failed() > failed_deliveries_) {
      // Offsets are committed after their output only: send what may be missing again (a
      // record a worker listed but is yet to produce may then go out twice: at least once).
      failed_deliveries_ = producer_->failed();
      const std::lock_guard lock(output_mutex_);
      for (const Output& o : open_output_) Send(o).IgnoreError();
      s = Status::Unavailable("deliveries failed; their records are produced again");
    }
    return s.ok() ? consumer_->Commit(offsets, metadata) : s;
  }
  if (!redo_transaction_) {
    Status s = producer_->CommitTransaction(consumer_.get(), offsets, metadata, kCommitTimeoutMs);
    if (s.code() != Status::Code::kFailedPrecondition) return s;
    redo_transaction_ = true;
  }
  // Aborted: begun again with the same records, committed at the next attempt. Until all of
  // that has worked, the next attempt starts here again.
  if (Status aborted = producer_->AbortTransaction(kCommitTimeoutMs); !aborted.ok()) return aborted;
  if (Status begun = producer_->BeginTransaction(); !begun.ok()) return begun;
  {
    const std::lock_guard lock(output_mutex_);
    for (const Output& o : open_output_) {
      if (Status produced = Send(o); !produced.ok()) return produced;
    }
  }
  redo_transaction_ = false;
  return Status::FailedPrecondition("the transaction was aborted and begun again with its records");
}

void KafkaPipeline::FinishCommit() {
  const Status s = commit_.get();
  if (s.code() == Status::Code::kInternal) {
    // Fatal: another process took this transactional id over. It owns the output now.
    Log("the producer was fenced (" + s.message() + "); another instance has taken over, exiting");
    std::fflush(stderr);
    std::_Exit(75);
  }
  if (s.code() == Status::Code::kFailedPrecondition) {
    ++aborts_;
    Log("transaction aborted, redone: " + s.message());
    resume_commit_ = false;
    return ReleaseHeldOutput();  // into the transaction begun again
  }
  if (!s.ok()) {
    // Timed out (the broker is away): a transaction in the middle of its commit, or of its
    // redoing, only resumes that.
    resume_commit_ = producer_->transactional();
    if (!resume_commit_) ReleaseHeldOutput();
    return Failed(s);
  }
  resume_commit_ = false;
  committed_position_ = committing_position_;
  durability_->OutputCommitted(committed_position_);
  ++commits_;
  commit_seconds_.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_started_).count());
  {
    // What was made after the mark waits for the next one.
    const std::lock_guard lock(output_mutex_);
    std::erase_if(open_output_, [this](const Output& o) { return o.after_mark < committing_mark_; });
  }
  begin_transaction_ = producer_->transactional();
  if (begin_transaction_) {
    if (Status begun = producer_->BeginTransaction(); !begun.ok()) return Failed(begun);
    begin_transaction_ = false;
  }
  ReleaseHeldOutput();
  ready_ = true;
  last_error_.clear();
}

Status KafkaPipeline::CommitNow() {
  // The commit under way first, then one of everything after it.
  for (int round = 0; round < 2; ++round) {
    if (!commit_.valid()) {
      if (!Uncommitted() && !resume_commit_ && !begin_transaction_) return Status::Ok();
      StartCommit();
      if (!commit_.valid()) return Status::Unavailable(last_error_);
    }
    // The workers are waited for as long as they take, like any barrier; the broker is not.
    AwaitMark(committing_mark_);
    // Before serving, a slow broker (still aborting what a killed process left open) is
    // waited for longer; after, the server's thread must not wait long.
    const int wait_ms = serving_ ? kCommitNowWaitMs : kCommitTimeoutMs;
    if (commit_.wait_for(std::chrono::milliseconds(wait_ms)) != std::future_status::ready) {
      return Status::Unavailable("the broker has not taken the commit yet");
    }
    FinishCommit();
  }
  if (Uncommitted() || resume_commit_) return Status::Unavailable("the output is not committed: " + last_error_);
  return Status::Ok();
}

void KafkaPipeline::Produce(size_t maker, const std::string& topic, std::string_view key, std::string_view value,
                           std::vector<std::pair<std::string, std::string>> headers) {
  if (quiet_) return;  // already in Kafka: committed before the crash
  // Copied before the lock, which every worker and the commit take.
  Output output{&topic, std::string(key), std::string(value), headers, 0};
  {
    const std::lock_guard lock(output_mutex_);
    output.after_mark = maker == kInputThread ? marks_ : passed_[maker];
    if (hold_output_ && output.after_mark >= committing_mark_) return held_output_.push_back(std::move(output));
    open_output_.push_back(std::move(output));
  }
  // Outside the lock: a full queue (the broker away) holds this worker only. With
  // exactly_once, a record listed for the committing transaction is produced before its
  // worker passes the mark, which the commit waits for; so it is in the transaction it was
  // listed for.
  if (Status s = producer_->Produce(topic, key, value, headers); !s.ok()) Log(s.message());
}

void KafkaPipeline::Alert(size_t worker, std::string_view pattern_id, uint64_t version, std::string_view key_json,
                          std::string_view alert_json) {
  Produce(worker, options_.alerts_topic, KeyBytes(key_json), alert_json,
          {{"vigil-pattern", std::string(pattern_id)}, {"vigil-pattern-version", std::to_string(version)}});
  ++alerts_out_;
}

void KafkaPipeline::Malformed(std::string_view text, std::string_view reason) {
  Produce(kInputThread, options_.dead_letter_topic, {}, text, {{"vigil-error", std::string(reason)}});
  ++dead_letters_out_;
}

void KafkaPipeline::Late(std::string_view text, std::string_view reason) {
  Produce(kInputThread, options_.late_topic, {}, text, {{"vigil-error", std::string(reason)}});
  ++late_out_;
}

void KafkaPipeline::AppendMetrics(std::string* out) {
  auto metric = [out](const char* name, const char* type, const char* help) {
    *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  metric("vigil_kafka_records_in_total", "counter", "Records read from the input topics.");
  *out += "vigil_kafka_records_in_total " + std::to_string(records_in_) + "\n";
  metric("vigil_kafka_records_out_total", "counter", "Records produced, by topic.");
  *out += "vigil_kafka_records_out_total{topic=\"alerts\"} " + std::to_string(alerts_out_.load()) + "\n";
  *out += "vigil_kafka_records_out_total{topic=\"dead_letters\"} " + std::to_string(dead_letters_out_) + "\n";
  *out += "vigil_kafka_records_out_total{topic=\"late_events\"} " + std::to_string(late_out_) + "\n";
  metric("vigil_kafka_commits_total", "counter", "Transactions (or offset commits) committed.");
  *out += "vigil_kafka_commits_total " + std::to_string(commits_) + "\n";
  metric("vigil_kafka_aborts_total", "counter", "Transactions aborted.");
  *out += "vigil_kafka_aborts_total " + std::to_string(aborts_) + "\n";
  commit_seconds_.AppendPrometheus(out, "vigil_kafka_commit_duration_seconds",
                                   "From the start of each commit that went through to its end: the workers passing "
                                   "its mark, then the transaction's (or the offsets') commit.");
  metric("vigil_kafka_rebalances_total", "counter", "Consumer group rebalances.");
  *out += "vigil_kafka_rebalances_total " + std::to_string(consumer_ ? consumer_->rebalances() : 0) + "\n";
  metric("vigil_kafka_input_waits_total", "counter",
         "Polls skipped because matching had no room for more events (back-pressure).");
  *out += "vigil_kafka_input_waits_total " + std::to_string(input_waits_) + "\n";
  metric("vigil_kafka_consumer_lag", "gauge", "Records behind the end of each input partition.");
  if (consumer_) {
    for (const auto& [partition, lag] : consumer_->Lag()) {
      *out += "vigil_kafka_consumer_lag{topic=\"" + partition.topic + "\",partition=\"" +
              std::to_string(partition.partition) + "\"} " + std::to_string(lag) + "\n";
    }
  }
  metric("vigil_kafka_partition_watermark_ms", "gauge",
         "Each input partition's watermark (event time, epoch ms); the engine's is the smallest over the "
         "partitions that are not idle.");
  for (const auto& [partition, source] : sources_) {
    const int64_t watermark = matcher_->source_watermark_ms(source);
    if (watermark == INT64_MIN) continue;
    const auto idle = idle_.find(source);
    *out += "vigil_kafka_partition_watermark_ms{topic=\"" + partition.topic + "\",partition=\"" +
            std::to_string(partition.partition) + "\",idle=\"" +
            (idle != idle_.end() && idle->second ? "true" : "false") + "\"} " + std::to_string(watermark) + "\n";
  }
  metric("vigil_kafka_committed_input_position", "gauge", "Input position whose output is committed.");
  *out += "vigil_kafka_committed_input_position " + std::to_string(committed_position_) + "\n";
}

}  // namespace vigil::server
