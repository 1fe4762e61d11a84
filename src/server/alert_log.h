#pragma once
// AlertLog: where the server's matches go. Each match becomes an alert (the replay match
// shape plus version, first and last event time and detection time), appended to the alerts
// NDJSON file and kept in a bounded in-memory list for GET /alerts. Late events of the
// request being ingested are collected for its response.
// Not thread-safe: used on the server's one thread.

#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "nfa/matcher.h"
#include "server/http_server.h"

namespace vigil::server {

class AlertLog : public nfa::MatchSink {
 public:
  // `version_of` gives a pattern's current version for its alerts.
  AlertLog(size_t recent_limit, std::function<uint64_t(const std::string&)> version_of);
  ~AlertLog() override;

  // Opens (creating if needed) the alerts file and the late-events file for appending. The
  // alerts file is rotated past `max_file_bytes`, keeping `keep_files` old ones.
  Status Open(const std::string& alerts_path, const std::string& late_events_path,
              size_t max_file_bytes, size_t keep_files);

  // While set (steady-clock ns), each alert's delay since this ingest began is recorded.
  void set_ingest_started_ns(int64_t ns) { ingest_started_ns_ = ns; }
  // Ingest-to-alert delay: bucket upper bounds (s), counts per bucket (not cumulative), sum.
  static constexpr double kLatencyBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
  const std::vector<uint64_t>& latency_counts() const { return latency_counts_; }
  double latency_sum_seconds() const { return latency_sum_s_; }
  uint64_t latency_observations() const { return latency_n_; }

  // The most recent alerts, newest first, at most `limit`.
  std::vector<std::string> Recent(size_t limit) const;

  // Streams every later alert to `stream` (GET /alerts/stream) while it is open.
  void Subscribe(std::shared_ptr<EventStream> stream);
  size_t subscribers();

  // Writes buffered alerts and late events to their files.
  Status Flush();

  // While set, late events are reported here, with the index of the event in its request
  // (the event's line() - 1).
  struct Problem {
    size_t index;
    std::string reason;
  };
  void CollectProblems(std::vector<Problem>* problems) { problems_ = problems; }

  uint64_t late_events() const { return late_events_; }
  const std::map<std::string, uint64_t>& matches_by_pattern() const { return matches_; }
  const std::map<std::string, uint64_t>& timeouts_by_pattern() const { return timeouts_; }
  // Events a pattern could not use because its key field was missing or not a scalar.
  const std::map<std::string, uint64_t>& unkeyed_by_pattern() const { return unkeyed_; }

  void OnMatch(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) override;
  void OnLate(const nfa::Event& event, int64_t watermark_ms) override;
  void OnRejected(const nfa::Event& event, const nfa::Nfa& nfa, std::string_view reason) override;

 private:
  size_t recent_limit_;
  std::function<uint64_t(const std::string&)> version_of_;
  Status RotateIfFull();

  std::string alerts_path_;
  size_t max_file_bytes_ = 0;
  size_t keep_files_ = 0;
  size_t file_bytes_ = 0;
  int64_t ingest_started_ns_ = 0;
  std::vector<uint64_t> latency_counts_ = std::vector<uint64_t>(std::size(kLatencyBuckets) + 1);
  double latency_sum_s_ = 0;
  uint64_t latency_n_ = 0;
  std::FILE* file_ = nullptr;
  std::FILE* late_file_ = nullptr;
  std::string pending_;       // alerts not yet written to the file
  std::string pending_late_;  // late events not yet written to theirs
  std::deque<std::string> recent_;
  // Weak: a stream lives as long as its connection, not as long as it is subscribed.
  std::vector<std::weak_ptr<EventStream>> subscribers_;
  std::vector<Problem>* problems_ = nullptr;
  uint64_t late_events_ = 0;
  std::map<std::string, uint64_t> matches_;
  std::map<std::string, uint64_t> timeouts_;
  std::map<std::string, uint64_t> unkeyed_;
};

}  // namespace vigil::server
