#pragma once
// AlertLog: where the server's matches go. Each match becomes an alert (the replay match
// shape plus id, version, first and last event time and detection time), appended to the
// alerts NDJSON file and kept in a bounded in-memory list for GET /alerts. Late events of the
// request being ingested are collected for its response.
//
// An alert's id is a hash of what identifies its match: pattern, version, key, timeout or
// not, and the input position and stage of each of its events. A replay of the same input
// after a crash finds the same matches with the same ids, so the alerts already written
// (Reconcile) are recognised and not written twice.
//
// Thread safety: matches arrive on the matching workers' threads, through the sinks of
// worker_sink(); everything they touch is behind one mutex, taken once per alert (the
// forwarder is called before it). Live subscribers are written to on the server's thread.
// Everything else (the files, late events, unkeyed counts, Open, Flush, OutputPosition,
// Reconcile, CollectProblems) is the server's thread's.

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "server/http_server.h"
#include "server/seconds_histogram.h"

namespace vigil::server {

// Where alerts, malformed and late events go besides the files (Kafka topics).
class AlertForwarder {
 public:
  virtual ~AlertForwarder() = default;
  // On the thread of `worker`, the engine's worker that matched it (the input thread with one
  // worker).
  virtual void Alert(size_t worker, std::string_view pattern_id, uint64_t version, std::string_view key_json,
                     std::string_view alert_json) = 0;
  // On the same thread: every alert of the events added before
  // engine::ShardedMatcher::Mark(mark) that `worker` holds was forwarded.
  virtual void Passed(size_t worker, uint64_t mark) = 0;
  // On the input thread.
  virtual void Malformed(std::string_view text, std::string_view reason) = 0;
  virtual void Late(std::string_view text, std::string_view reason) = 0;
};

class AlertLog : public engine::InputSink {
 public:
  // Live subscribers are written to on `io`'s thread; `workers` sinks are made.
  AlertLog(boost::asio::io_context& io, size_t recent_limit, size_t workers);
  ~AlertLog() override;

  // The sink of worker `i`'s matches.
  engine::WorkerSink* worker_sink(size_t i) { return &worker_sinks_[i]; }

  // Opens (creating if needed) the alerts file and the late-events file for appending. The
  // alerts file is rotated past `max_file_bytes`, keeping `keep_files` old ones.
  Status Open(const std::string& alerts_path, const std::string& late_events_path,
              size_t max_file_bytes, size_t keep_files);

  // Ingest-to-alert delay (from the time the events of the alert entered, as the matcher
  // reports it).
  static constexpr double kLatencyBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
  SecondsHistogram latency() const;

  // The most recent alerts, newest first, at most `limit`.
  std::vector<std::string> Recent(size_t limit) const;

  // Also sends alerts, malformed and late events to `forwarder` (set before events flow;
  // changed only while no worker matches, after a ShardedMatcher::Sync).
  void Forward(AlertForwarder* forwarder) { forwarder_ = forwarder; }

  // Streams every later alert to `stream` (GET /alerts/stream) while it is open.
  void Subscribe(std::shared_ptr<EventStream> stream);
  size_t subscribers();

  // Writes buffered alerts and late events to their files.
  Status Flush();

  // Where the alerts file stands (after Flush()): an opaque value for Reconcile.
  std::string OutputPosition() const;
  // Recovery: reads the ids of the alerts written since `position` (empty: all the files
  // hold); a match with one of them is not written again until EndReconcile(). Late events
  // written since are cut from their file (the replay reports them again). Returns how many
  // ids were read.
  Result<size_t> Reconcile(std::string_view position);
  // Returns the alerts recognised as already written since Reconcile().
  uint64_t EndReconcile();

  // While set, malformed and late events are reported here, `index` being the event's line
  // (its input position) less `first_line`.
  struct Problem {
    size_t index;
    std::string reason;
  };
  void CollectProblems(std::vector<Problem>* problems, uint64_t first_line = 0) {
    problems_ = problems;
    first_line_ = first_line;
  }

  uint64_t late_events() const { return late_events_; }
  std::map<std::string, uint64_t> matches_by_pattern() const;
  std::map<std::string, uint64_t> timeouts_by_pattern() const;
  // Events a pattern could not use because its key field was missing or not a scalar.
  const std::map<std::string, uint64_t>& unkeyed_by_pattern() const { return unkeyed_; }

  void OnMalformed(uint64_t line, std::string_view text, std::string_view reason) override;
  void OnLate(const nfa::Event& event, int64_t watermark_ms) override;
  void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) override;

 private:
  // One worker's way in: remembers when the events being matched entered.
  class WorkerIntake : public engine::WorkerSink {
   public:
    WorkerIntake(AlertLog* log, size_t worker) : log_(log), worker_(worker) {}
    void BeginBlock(int64_t entered_steady_ns) override { entered_steady_ns_ = entered_steady_ns; }
    void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override {
      log_->Record(worker_, nfa, key_json, match, entered_steady_ns_);
    }
    void OnMark(uint64_t mark) override {
      if (log_->forwarder_) log_->forwarder_->Passed(worker_, mark);
    }

   private:
    AlertLog* log_;
    size_t worker_;
    int64_t entered_steady_ns_ = 0;
  };

  // Worker `worker`'s thread.
  void Record(size_t worker, const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match,
              int64_t entered_steady_ns);
  // Opens alerts_path_ for appending, as whole lines after any rotation left half done.
  Status OpenAlertsFile();
  Status RotateIfFull();

  boost::asio::io_context& io_;
  size_t recent_limit_;
  AlertForwarder* forwarder_ = nullptr;
  std::deque<WorkerIntake> worker_sinks_;  // a deque: its elements never move

  // The alerts file: the server thread's.
  std::string alerts_path_;
  size_t max_file_bytes_ = 0;
  size_t keep_files_ = 0;
  size_t file_bytes_ = 0;
  std::FILE* file_ = nullptr;
  std::string flushing_;  // alerts being written (or whose write failed, to be written first)

  mutable std::mutex mutex_;  // guards the alerts' members below, up to the late events'
  SecondsHistogram latency_{kLatencyBuckets};
  std::string pending_;  // alerts not yet written to the file
  std::deque<std::string> recent_;
  // Weak: a stream lives as long as its connection, not as long as it is subscribed.
  std::vector<std::weak_ptr<EventStream>> subscribers_;
  std::map<std::string, uint64_t> matches_;
  std::map<std::string, uint64_t> timeouts_;
  std::unordered_map<uint64_t, uint32_t> written_before_;  // Reconcile's ids, with their counts
  uint64_t recognised_ = 0;

  std::string late_path_;
  size_t late_file_bytes_ = 0;
  std::FILE* late_file_ = nullptr;
  std::string pending_late_;  // late events not yet written to theirs
  std::vector<Problem>* problems_ = nullptr;
  uint64_t first_line_ = 0;
  uint64_t late_events_ = 0;
  std::map<std::string, uint64_t> unkeyed_;
};

}  // namespace vigil::server
