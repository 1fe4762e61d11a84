#pragma once
// Api: the REST routes of `vigil serve` (see openapi in the README and the issue tracker):
// patterns (create, replace, list, get, delete, enable, disable, validate), events, alerts,
// metrics, health. Maps every outcome to a status and a JSON body; errors are
// {"error":{"code","message"}}, compile errors {"errors":[{"line","column","message"}]}.
// Not thread-safe: used on the server's one thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/sharded_matcher.h"
#include "server/alert_log.h"
#include "server/audit_log.h"
#include "server/durability.h"
#include "server/http_server.h"
#include "server/ingest.h"
#include "server/kafka_pipeline.h"
#include "server/pattern_cpu_budget.h"
#include "server/pattern_registry.h"
#include "server/rules_topic.h"
#include "server/server_options.h"

namespace vigil::server {

class Api {
 public:
  // `audit` receives every request to change a pattern.
  Api(const ServerOptions& options, PatternRegistry* registry, Ingest* ingest, AlertLog* alerts,
      engine::ShardedMatcher* matcher, Durability* durability, AuditLog* audit);

  // Answers `request` from `client` (its IP address, for the audit log). With api.token set,
  // the bearer token decides the role: admin may do everything; read-only (api.read_token)
  // the GET routes and POST /validate (anything else: 403); no or a wrong token, only
  // /healthz, /readyz and /metrics (anything else: 401).
  HttpResponse Handle(const HttpRequest& request, std::string_view client);

  // With Kafka: readiness follows the broker, and /metrics has the pipeline's.
  void SetKafka(KafkaPipeline* kafka, RulesTopic* rules) {
    kafka_ = kafka;
    rules_ = rules;
  }

  // /metrics counts the patterns it disabled.
  void SetCpuBudget(const PatternCpuBudget* budget) { cpu_budget_ = budget; }

  // One route: its method and path template ({id} matches one segment), what it does, the
  // body types it accepts (comma-separated; empty: no body) and its responses. The router and
  // /openapi.json both read this table.
  struct RouteSpec {
    boost::beast::http::verb verb;
    std::string_view path;
    std::string_view summary;
    std::string_view request_types;
    std::vector<std::pair<unsigned, std::string_view>> responses;
    HttpResponse (Api::*handler)(const HttpRequest&, const std::string& id);
  };
  static const std::vector<RouteSpec>& Routes();

 private:
  static constexpr std::string_view kPatternTypes = "application/yaml,application/json";
  static constexpr size_t kMaxSubscribers = 64;

  // Ordered: a role may do what the ones below it may.
  enum class Role { kNone, kReadOnly, kAdmin };
  // The role the request's bearer token gives; kAdmin when the API has no token.
  Role RoleOf(const HttpRequest& request) const;
  static Role RoleNeeded(const RouteSpec& route);
  // The route `request` names and its {id} segment, or null with the 404 or 405 to answer.
  const RouteSpec* FindRoute(const HttpRequest& request, std::string* id,
                             std::optional<HttpResponse>* no_route) const;
  // A request to change a pattern: its audit action (create, replace, ...), or empty.
  static std::string_view AuditAction(const RouteSpec& route);
  void Audit(std::string_view client, const RouteSpec& route, const std::string& id, Role role,
             const HttpResponse& response);
  // Handlers; `id` is the {id} segment of the path, empty for routes without one.
  HttpResponse CreatePattern(const HttpRequest& request, const std::string& id);
  HttpResponse PutPattern(const HttpRequest& request, const std::string& id);
  HttpResponse GetPattern(const HttpRequest& request, const std::string& id);
  HttpResponse ListPatterns(const HttpRequest& request, const std::string& id);
  HttpResponse DeletePattern(const HttpRequest& request, const std::string& id);
  HttpResponse EnablePattern(const HttpRequest& request, const std::string& id);
  HttpResponse DisablePattern(const HttpRequest& request, const std::string& id);
  HttpResponse SetEnabled(const HttpRequest& request, const std::string& id, bool enabled);
  HttpResponse ValidatePattern(const HttpRequest& request, const std::string& id);
  HttpResponse PostEvents(const HttpRequest& request, const std::string& id);
  HttpResponse GetAlerts(const HttpRequest& request, const std::string& id);
  HttpResponse StreamAlerts(const HttpRequest& request, const std::string& id);
  HttpResponse ListCheckpoints(const HttpRequest& request, const std::string& id);
  HttpResponse TakeCheckpoint(const HttpRequest& request, const std::string& id);
  HttpResponse Metrics(const HttpRequest& request, const std::string& id);
  // The durability metrics: checkpoints, state on disk, recovery.
  void AppendStateMetrics(std::string* out);
  HttpResponse Health(const HttpRequest& request, const std::string& id);
  HttpResponse Ready(const HttpRequest& request, const std::string& id);
  HttpResponse OpenApi(const HttpRequest& request, const std::string& id);

  // The document's content type, or an error response (415, 413).
  std::variant<std::string, HttpResponse> PatternBody(const HttpRequest& request);

  const ServerOptions& options_;
  PatternRegistry* registry_;
  Ingest* ingest_;
  AlertLog* alerts_;
  engine::ShardedMatcher* matcher_;
  Durability* durability_;
  KafkaPipeline* kafka_ = nullptr;
  const PatternCpuBudget* cpu_budget_ = nullptr;
  RulesTopic* rules_ = nullptr;
  AuditLog* audit_;
  uint64_t events_received_ = 0;
  uint64_t events_accepted_ = 0;
  uint64_t events_malformed_ = 0;
  uint64_t events_refused_overloaded_ = 0;  // POST /events bodies answered 503
  std::optional<engine::ShardedMatcher::Observation> last_observation_;  // for /metrics
  std::map<std::pair<std::string, unsigned>, uint64_t> requests_;  // (route, status) -> count
};

}  // namespace vigil::server
