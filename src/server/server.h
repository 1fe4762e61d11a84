#pragma once
// Server: `vigil serve` assembled: patterns (stored and from the patterns directory), the
// sharded matcher and its workers, durability (input log, checkpoints, recovery), HTTP
// ingest, alerts and the REST API. HTTP, ingest and the
// API run on one io_context thread; matching runs on the workers (see ShardedMatcher).
//
// Lifetime: construct, Start() (loads and listens), Run() until Stop() or SIGINT/SIGTERM;
// stopping closes the listener, finishes the request in flight, flushes the alerts file.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "nfa/field_schema.h"
#include "server/alert_log.h"
#include "server/api.h"
#include "server/audit_log.h"
#include "server/durability.h"
#include "server/http_server.h"
#include "server/ingest.h"
#include "server/kafka_pipeline.h"
#include "server/pattern_cpu_budget.h"
#include "server/pattern_registry.h"
#include "server/rules_topic.h"
#include "server/server_options.h"
#include "state/spill_store.h"

namespace vigil::server {

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Opens the alerts file, recovers the state (restores the newest checkpoint that loads and
  // replays the input log after it), loads the stored patterns and the patterns directory,
  // takes a checkpoint and starts listening. Returns warnings (checkpoints skipped, patterns
  // that failed to load) through `warnings`.
  Status Start(std::vector<std::string>* warnings);
  uint16_t port() const { return http_->port(); }

  // Serves until Stop() or a SIGINT/SIGTERM.
  void Run();
  void Stop();

 private:
  Status LoadPatternsDirectory(std::vector<std::string>* warnings);
  void ScheduleTick();
  void ReportDroppedPartialMatches(int64_t now_ms);

  ServerOptions options_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer grace_;
  boost::asio::steady_timer tick_;
  nfa::FieldSchema schema_;
  std::unique_ptr<AlertLog> alerts_;  // before the matcher: its workers write here until joined
  std::unique_ptr<state::SpillStore> spill_;  // with a memory budget; before the matcher too
  std::unique_ptr<engine::ShardedMatcher> matcher_;
  std::unique_ptr<Durability> durability_;
  std::unique_ptr<KafkaPipeline> kafka_;  // with kafka.brokers
  std::unique_ptr<RulesTopic> rules_;     // with kafka.brokers
  std::unique_ptr<PatternRegistry> registry_;
  std::unique_ptr<Ingest> ingest_;
  AuditLog audit_;
  std::unique_ptr<PatternCpuBudget> cpu_budget_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpServer> http_;
  int64_t last_limit_report_ms_ = 0;
  uint64_t dropped_reported_ = 0;
};

}  // namespace vigil::server
