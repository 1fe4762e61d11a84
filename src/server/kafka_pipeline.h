#pragma once
// KafkaPipeline: `vigil serve` on Kafka. Records of the input topics go to the matcher, alerts,
// dead letters and late events to their topics, exactly once (or at least once).
//
//  1. Input: one consumer group over the input topics, polled on the server's thread. Each
//     batch of records is logged (Durability::LogSourcedEvents, with where every partition
//     stands after it) before the matcher sees it, so a replay after a crash sees the same
//     records in the same order whatever Kafka redelivers. Each partition is a source of the
//     engine's watermark; one with no record for input.idle_timeout goes idle (logged too).
//  2. Output: alerts (from the workers), dead letters and late events (from the input thread)
//     are produced as they come, into the open transaction (exactly_once) or straight away.
//  3. Commit, every commit_interval: the input so far is marked in the engine
//     (ShardedMatcher::Mark) and the input log is synced to disk (with input_log.fsync). On a
//     thread of its own, the commit waits until every worker has passed the mark (every alert
//     of that input is produced), then the transaction commits that output with the input
//     offsets and, as their metadata, this instance's name and the input position. The input
//     goes on meanwhile: output made after the mark (by a worker past it, or by the input
//     thread) is held back for the next transaction (at_least_once: produced, and counted in
//     the next commit); while the broker is away the input waits, the server's thread (HTTP,
//     metrics, rules) does not. Checkpoints record where every partition stands; a periodic
//     one waits for no commit (the input stops for its barrier only), but counts only once
//     a commit covers its input (Durability::KeepAfterCommit), so a checkpoint that counts
//     never holds input whose output is uncommitted. A transaction the broker aborts (a
//     coordinator that moved, a consumer group that re-formed after a broker restart) is begun
//     again with the same records, kept until their commit, so an outage costs time, not
//     output; a commit that timed out is resumed with the offsets and position it began with.
//  4. Recovery: opening the transactional producer fences and aborts what the previous process
//     left open; the group's committed metadata says up to which input position the output is
//     in Kafka. The replay (Durability) produces nothing up to there, and everything after it
//     into a new transaction; the consumer resumes after the last record logged.
// Several instances in one consumer group share the partitions (each needs its own
// kafka.transactional_id); each holds the partial matches of the keys its partitions bring,
// which is right when the input is partitioned by the patterns' key. Partial matches do not
// move with a partition that moves to another instance.
// Not thread-safe except Forwarding's callbacks (see AlertLog).

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "kafka/kafka_client.h"
#include "server/alert_log.h"
#include "server/durability.h"
#include "server/seconds_histogram.h"
#include "server/server_options.h"

namespace vigil::server {

class KafkaPipeline : public AlertForwarder {
 public:
  // With kafka.input.time record, each event gains this field, the record's timestamp, and
  // the engine reads event time from it.
  static constexpr std::string_view kRecordTimeField = "_kafka_ts";

  // `sync_input_log`: the input log is synced to disk before each commit (input_log.fsync).
  KafkaPipeline(const ServerOptions::Kafka& options, bool sync_input_log, boost::asio::io_context& io,
                engine::ShardedMatcher* matcher, Durability* durability, AlertLog* alerts);
  ~KafkaPipeline() override;

  // Before recovery: creates the topics, opens the producer (fencing an earlier incarnation)
  // and the consumer, reads the committed input position and sets the replay hooks.
  Status Prepare();
  // After recovery: commits the replay's output and starts consuming.
  Status Start();
  // Commits what is pending and waits (a while) for it: before a checkpoint taken at start-up,
  // after a pattern change, on request or at shutdown (Durability's hook), when partitions
  // are taken away. Errors: the broker did not take it (yet).
  Status CommitNow();
  // Stops consuming.
  void Stop();

  // The broker answers, the last poll and the last commit went through.
  bool ready() const { return ready_ && reachable_ && !input_failed_; }
  void AppendMetrics(std::string* out);

  // AlertForwarder.
  void Alert(size_t worker, std::string_view pattern_id, uint64_t version, std::string_view key_json,
             std::string_view alert_json) override;
  void Passed(size_t worker, uint64_t mark) override;
  void Malformed(std::string_view text, std::string_view reason) override;
  void Late(std::string_view text, std::string_view reason) override;

 private:
  void ScheduleTick(int delay_ms);
  void Tick();
  // Input logged or output produced since the last commit.
  bool Uncommitted();
  // Starts committing everything so far on the committer thread.
  void StartCommit();
  // Takes the finished commit's outcome.
  void FinishCommit();
  // Produces the output held while a commit ran into the transaction now open.
  void ReleaseHeldOutput();
  // The committer thread's part: the transaction's (or the offsets') commit.
  Status CommitOutput(const kafka::Offsets& offsets, const std::string& metadata);
  // Waits until every worker has passed `mark`: as long as their backlog takes (and, with the
  // producer's queue full, the broker), since workers wait for no other thread.
  void AwaitMark(uint64_t mark);
  // Logs a failure (once while it repeats); Failed also marks the commits as failing.
  void Report(const Status& status);
  void Failed(const Status& status);
  void Probe();
  Status Ingest(const std::vector<kafka::Record>& records);
  void MarkIdle();
  void SetIdle(uint32_t source, bool idle);
  void Revoked(const std::vector<kafka::Partition>& partitions);
  uint32_t SourceOf(const kafka::Partition& partition);
  std::string EncodeSources() const;
  Status ReplayControl(std::string_view control);
  // Output of worker `maker`, or of the input thread (kInputThread).
  static constexpr size_t kInputThread = SIZE_MAX;
  void Produce(size_t maker, const std::string& topic, std::string_view key, std::string_view value,
               std::vector<std::pair<std::string, std::string>> headers);

  ServerOptions::Kafka options_;
  bool sync_input_log_;
  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  engine::ShardedMatcher* matcher_;
  Durability* durability_;
  AlertLog* alerts_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Consumer> consumer_;

  // Partitions as engine sources; numbers are logged and checkpointed (EncodeSources) so a
  // restart keeps them.
  std::map<kafka::Partition, uint32_t> sources_;
  std::map<kafka::Partition, int64_t> logged_offsets_;  // next offset after the last record logged
  std::map<uint32_t, int64_t> last_record_ms_;            // wall clock, by source
  std::map<uint32_t, bool> idle_;
  std::vector<std::pair<uint32_t, std::string_view>> batch_;
  std::vector<std::string> stamped_;  // events with their record time added (record_time)
  std::vector<kafka::Record> records_;

  std::string instance_;             // transactional id and group member name
  uint64_t committed_position_ = 0;  // input position whose output is committed
  std::future<Status> commit_;       // the commit under way, if any
  uint64_t committing_position_ = 0;
  kafka::Offsets committing_offsets_;
  bool redo_transaction_ = false;  // committer thread's: an aborted transaction is being redone
  bool unlogged_ = false;          // records_ were polled but the input log did not take them
  bool resume_commit_ = false;  // a transaction's commit timed out: only resuming it may follow
  bool begin_transaction_ = false;  // the next transaction is yet to begin
  uint64_t failed_deliveries_ = 0;  // at_least_once: the producer's count at the last commit
  std::atomic<bool> quiet_{false};   // replaying input whose output is already in Kafka
  // The records since the last commit, produced again when the transaction aborts (or, at
  // least once, a delivery fails). Workers produce at once.
  struct Output {
    const std::string* topic;
    std::string key;
    std::string value;
    std::vector<std::pair<std::string, std::string>> headers;
    uint64_t after_mark;  // the last mark its maker had passed: a commit of a later one covers it
  };
  // Produces one record of the output (again).
  Status Send(const Output& output);
  std::mutex output_mutex_;
  std::vector<Output> open_output_;
  // A transaction commits: output made after its mark waits for the next one.
  bool hold_output_ = false;
  std::vector<Output> held_output_;
  // Marks (guarded by output_mutex_): the last one made, which the input thread's output
  // follows; the one the commit under way (or last) waits for; and the last each worker passed.
  uint64_t marks_ = 0;
  uint64_t committing_mark_ = 0;
  std::vector<uint64_t> passed_;
  std::condition_variable passed_changed_;
  int64_t last_commit_ms_ = 0;
  // Whether the cluster answers, asked now and then on a thread of its own (a quiet input
  // says nothing about it).
  std::future<bool> probe_;
  int64_t last_probe_ms_ = 0;
  bool reachable_ = true;
  bool ready_ = false;        // the last commit went through
  bool input_failed_ = false;  // the last poll (or logging what it took) failed
  uint64_t input_waits_ = 0;   // polls skipped: the engine had no room
  bool serving_ = false;  // Start() is done
  bool stopped_ = false;
  std::string last_error_;
  uint64_t records_in_ = 0;
  std::atomic<uint64_t> alerts_out_{0};
  uint64_t dead_letters_out_ = 0;
  uint64_t late_out_ = 0;
  uint64_t commits_ = 0;
  uint64_t aborts_ = 0;
  // From a commit's mark to the end of its commit: how long its output waited (exactly_once).
  static constexpr double kCommitBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  SecondsHistogram commit_seconds_{kCommitBuckets};
  std::chrono::steady_clock::time_point commit_started_;
};

}  // namespace vigil::server
