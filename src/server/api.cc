#include "server/api.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>

#include <simdjson.h>

#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {
namespace http = boost::beast::http;

namespace {

// Beast (in Boost 1.74) has its own string_view.
std::string_view View(boost::beast::string_view s) { return {s.data(), s.size()}; }

// Path segments of a request target, without its query.
std::vector<std::string> Segments(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < target.size()) {
    size_t slash = target.find('/', pos);
    if (slash == std::string_view::npos) slash = target.size();
    if (slash > pos) out.emplace_back(target.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

// The value of query parameter `name`, or empty.
std::string_view QueryParam(std::string_view target, std::string_view name) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return {};
}

std::string_view MediaType(const HttpRequest& request) {
  std::string_view type = View(request[http::field::content_type]);
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  return type;
}

void AppendErrors(std::string* out, const std::vector<nfa::PatternError>& errors) {
  out->append("\"errors\":[");
  for (size_t i = 0; i < errors.size(); ++i) {
    if (i) out->push_back(',');
    out->append("{\"line\":" + std::to_string(errors[i].position.line) +
                ",\"column\":" + std::to_string(errors[i].position.column) + ",\"message\":");
    AppendJsonString(out, errors[i].message);
    out->push_back('}');
  }
  out->push_back(']');
}

const char* KindName(nfa::NfaState::Kind kind) {
  switch (kind) {
    case nfa::NfaState::Kind::kFinal:
      return "final";
    case nfa::NfaState::Kind::kStop:
      return "stop";
    case nfa::NfaState::Kind::kPending:
      return "pending";
    default:
      return "normal";
  }
}

// The compiled NFA as JSON: each state with its kind and transitions (for GET /patterns/{id}).
std::string DescribeNfa(const nfa::Nfa& nfa) {
  static constexpr const char* kActions[] = {"take", "ignore", "proceed"};
  std::string out = "{\"window_ms\":" + std::to_string(nfa.window_ms()) +
                    ",\"gap_window_ms\":" + std::to_string(nfa.gap_window_ms()) +
                    ",\"start_state\":" + std::to_string(nfa.start_state()) + ",\"states\":[";
  for (size_t i = 0; i < nfa.states().size(); ++i) {
    const nfa::NfaState& s = nfa.states()[i];
    if (i) out.push_back(',');
    out += "{\"id\":" + std::to_string(i) + ",\"stage\":";
    AppendJsonString(&out, s.name);
    out += ",\"kind\":\"" + std::string(KindName(s.kind)) + "\",\"transitions\":[";
    for (size_t t = 0; t < s.transitions.size(); ++t) {
      if (t) out.push_back(',');
      out += "{\"action\":\"" + std::string(kActions[static_cast<int>(s.transitions[t].action)]) +
             "\",\"target\":" + std::to_string(s.transitions[t].target) + "}";
    }
    out += "]}";
  }
  return out + "]}";
}

void AppendSummary(std::string* out, const StoredPattern& p) {
  out->append("{\"id\":");
  AppendJsonString(out, p.id);
  out->append(",\"version\":" + std::to_string(p.version) + ",\"description\":");
  AppendJsonString(out, p.nfa->pattern().description);
  out->append(std::string(",\"enabled\":") + (p.enabled ? "true" : "false"));
  if (!p.disabled_reason.empty()) {
    out->append(",\"disabled_reason\":");
    AppendJsonString(out, p.disabled_reason);
  }
  out->append(",\"created_ms\":" + std::to_string(p.created_ms) +
              ",\"updated_ms\":" + std::to_string(p.updated_ms));
}

// Per-worker load, and how unevenly the keys' events spread over the workers: the busiest
// worker's events over the mean (1 is even; N means one worker does all the work).
template <typename Metric>
void AppendWorkerMetrics(std::string* out, const std::vector<engine::ShardedMatcher::WorkerStats>& workers,
                         const Metric& metric) {
  auto per_worker = [&](const char* name, const char* type, const char* help, auto value) {
    metric(name, type, help);
    for (size_t i = 0; i < workers.size(); ++i) {
      out->append(name).append("{worker=\"").append(std::to_string(i)).append("\"} ");
      AppendJsonNumber(out, static_cast<double>(value(workers[i])));
      out->push_back('\n');
    }
  };
  using Stats = engine::ShardedMatcher::WorkerStats;
  per_worker("vigil_worker_events_total", "counter", "Events delivered to each worker.",
             [](const Stats& w) { return w.events; });
  per_worker("vigil_worker_busy_seconds_total", "counter", "Time each worker spent matching.",
             [](const Stats& w) { return w.busy_ns / 1e9; });
  per_worker("vigil_worker_queued_chunks", "gauge", "Chunks of events waiting for each worker.",
             [](const Stats& w) { return w.queued; });
  per_worker("vigil_worker_keys", "gauge", "Keys holding state in each worker.",
             [](const Stats& w) { return w.keys; });
  uint64_t total = 0, busiest = 0;
  for (const Stats& w : workers) {
    total += w.events;
    busiest = std::max(busiest, w.events);
  }
  metric("vigil_worker_skew", "gauge",
         "Events of the busiest worker over the mean per worker: 1 is even, the worker count is "
         "one hot shard.");
  *out += "vigil_worker_skew ";
  AppendJsonNumber(out, total == 0 ? 1.0 : static_cast<double>(busiest) * workers.size() / total);
  out->push_back('\n');
}

uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

Api::Api(const ServerOptions& options, PatternRegistry* registry, Ingest* ingest, AlertLog* alerts,
         engine::ShardedMatcher* matcher, Durability* durability, AuditLog* audit)
    : options_(options),
      registry_(registry),
      ingest_(ingest),
      alerts_(alerts),
      matcher_(matcher),
      durability_(durability),
      audit_(audit) {}

// Compares without an early exit, so the time taken says nothing about where a wrong token
// differs (its length is not hidden).
bool ConstantTimeEquals(std::string_view given, std::string_view expected) {
  if (given.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < given.size(); ++i) diff |= given[i] ^ expected[i];
  return diff == 0;
}

Api::Role Api::RoleOf(const HttpRequest& request) const {
  if (options_.api_token.empty()) return Role::kAdmin;
  const std::string_view header = View(request[http::field::authorization]);
  constexpr std::string_view kBearer = "Bearer ";
  if (header.substr(0, kBearer.size()) != kBearer) return Role::kNone;
  const std::string_view token = header.substr(kBearer.size());
  if (ConstantTimeEquals(token, options_.api_token)) return Role::kAdmin;
  if (!options_.api_read_token.empty() && ConstantTimeEquals(token, options_.api_read_token)) {
    return Role::kReadOnly;
  }
  return Role::kNone;
}

Api::Role Api::RoleNeeded(const RouteSpec& route) {
  if (route.path == "/healthz" || route.path == "/readyz" || route.path == "/metrics") {
    return Role::kNone;
  }
  if (route.verb == http::verb::get || route.path == "/validate") return Role::kReadOnly;
  return Role::kAdmin;
}

std::string_view Api::AuditAction(const RouteSpec& route) {
  if (route.handler == &Api::CreatePattern) return "create";
  if (route.handler == &Api::PutPattern) return "replace";
  if (route.handler == &Api::DeletePattern) return "delete";
  if (route.handler == &Api::EnablePattern) return "enable";
  if (route.handler == &Api::DisablePattern) return "disable";
  return {};
}

HttpResponse Api::Handle(const HttpRequest& request, std::string_view client) {
  std::string id;
  std::optional<HttpResponse> no_route;
  const RouteSpec* route = FindRoute(request, &id, &no_route);
  const Role role = RoleOf(request);
  // An unknown route needs the read-only role, so it says nothing to a caller without a token.
  const Role needed = route != nullptr ? RoleNeeded(*route) : Role::kReadOnly;
  HttpResponse response;
  std::string label;  // a bounded metric label: the route template or the outcome
  if (route != nullptr) {
    label = route->path;
  } else {
    label = no_route->result() == http::status::method_not_allowed ? "method_not_allowed" : "not_found";
  }
  if (role < needed) {
    if (role == Role::kNone) {
      response = ErrorResponse(request, http::status::unauthorized, "unauthorized",
                               "missing or wrong bearer token");
      response.set(http::field::www_authenticate, "Bearer");
      label = "unauthorized";
    } else {
      response = ErrorResponse(request, http::status::forbidden, "forbidden",
                               "the read-only token may not do this");
      label = "forbidden";
    }
  } else {
    response = route != nullptr ? (this->*route->handler)(request, id) : std::move(*no_route);
  }
  // Requests without a valid token are counted (requests_, "unauthorized"), not audited: an
  // anonymous client must not be able to fill the disk with audit lines.
  if (route != nullptr && role != Role::kNone && !AuditAction(*route).empty()) {
    Audit(client, *route, id, role, response);
  }
  ++requests_[{label, response.result_int()}];
  return response;
}

void Api::Audit(std::string_view client, const RouteSpec& route, const std::string& id, Role role,
                const HttpResponse& response) {
  AuditLog::Entry entry;
  entry.actor = options_.api_token.empty() ? "anonymous" : role == Role::kAdmin ? "admin" : "read-only";
  entry.address = client;
  entry.action = AuditAction(route);
  entry.pattern = id;
  entry.status = response.result_int();
  // A change that went through answers with the pattern's id and new version.
  std::string pattern_from_body;
  if (response.result_int() / 100 == 2 && !response.body().empty()) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(response.body()).get(doc) == simdjson::SUCCESS) {
      std::string_view body_id;
      if (id.empty() && doc["id"].get(body_id) == simdjson::SUCCESS) pattern_from_body = body_id;
      int64_t version = 0;
      if (doc["version"].get(version) == simdjson::SUCCESS) entry.version = version;
    }
  }
  if (id.empty()) entry.pattern = pattern_from_body;
  audit_->Record(entry);
}

// Every route, once: the router matches against it and /openapi.json is generated from it, so
// the document always lists exactly the routes the server answers.
const std::vector<Api::RouteSpec>& Api::Routes() {
  using V = http::verb;
  static const std::vector<RouteSpec> kRoutes = {
      {V::post, "/patterns", "Add a pattern (its id comes from the document)", kPatternTypes,
       {{201, "created: {id, version}"}, {409, "the id exists"}, {413, "document too large"},
        {415, "unknown content type"}, {422, "does not compile: {errors:[{line,column,message}]}"}},
       &Api::CreatePattern},
      {V::get, "/patterns", "List patterns: id, version, description, enabled, times", "",
       {{200, "{patterns:[...]}"}}, &Api::ListPatterns},
      {V::put, "/patterns/{id}",
       "Create or replace a pattern; the version increments and only this pattern's partial "
       "matches are dropped (reported as dropped_partial_matches)",
       kPatternTypes,
       {{200, "replaced"}, {201, "created"}, {400, "the document's id differs from the path"},
        {413, "document too large"}, {415, "unknown content type"}, {422, "does not compile"}},
       &Api::PutPattern},
      {V::get, "/patterns/{id}", "One pattern with its source as uploaded and its compiled NFA", "",
       {{200, "the pattern"}, {404, "no such pattern"}}, &Api::GetPattern},
      {V::delete_, "/patterns/{id}", "Remove a pattern and its partial matches", "",
       {{204, "removed"}, {404, "no such pattern"}}, &Api::DeletePattern},
      {V::post, "/patterns/{id}/disable", "Stop matching a pattern without deleting it", "",
       {{200, "{id, enabled:false}"}, {404, "no such pattern"}}, &Api::DisablePattern},
      {V::post, "/patterns/{id}/enable", "Resume matching a disabled pattern", "",
       {{200, "{id, enabled:true}"}, {404, "no such pattern"}}, &Api::EnablePattern},
      {V::post, "/validate", "Compile a pattern without storing it", kPatternTypes,
       {{200, "{valid:true}"}, {413, "document too large"}, {415, "unknown content type"},
        {422, "{valid:false, errors:[{line,column,message}]}"}},
       &Api::ValidatePattern},
      {V::post, "/events", "Ingest events: NDJSON or a JSON array of objects; matched asynchronously",
       "application/x-ndjson,application/json",
       {{202, "{accepted, rejected:[{index, reason}]} (malformed and late events)"},
        {400, "a JSON array body that does not parse"},
        {409, "Kafka is configured: events come from its input topics"}, {413, "body too large"},
        {415, "unknown content type"},
        {503, "overloaded (Retry-After) or the input log cannot be written: nothing taken"}},
       &Api::PostEvents},
      {V::get, "/checkpoints",
       "Checkpoints kept, newest first: id, time, duration, size, input position", "",
       {{200, "{checkpoints:[{id, created_ms, duration_ms, bytes, new_bytes, keys_written, input_position}]}"}},
       &Api::ListCheckpoints},
      {V::post, "/checkpoints", "Take a checkpoint now", "",
       {{201, "the checkpoint"}, {500, "it failed: the previous ones still count"}},
       &Api::TakeCheckpoint},
      {V::get, "/alerts",
       "The most recent alerts, newest first (query: limit, default 100); includes the alerts of "
       "every event posted before",
       "",
       {{200, "{alerts:[...]}"}, {400, "bad limit"}}, &Api::GetAlerts},
      {V::get, "/alerts/stream", "Alerts as Server-Sent Events (event: alert), live", "",
       {{200, "text/event-stream"}, {503, "too many subscribers"}}, &Api::StreamAlerts},
      {V::get, "/metrics", "Prometheus text format", "", {{200, "metrics"}}, &Api::Metrics},
      {V::get, "/healthz", "Liveness", "", {{200, "{status:ok}"}}, &Api::Health},
      {V::get, "/readyz", "Readiness: patterns loaded, state open", "", {{200, "{ready, patterns}"}},
       &Api::Ready},
      {V::get, "/openapi.json", "This document", "", {{200, "OpenAPI 3"}}, &Api::OpenApi},
  };
  return kRoutes;
}

const Api::RouteSpec* Api::FindRoute(const HttpRequest& request, std::string* id,
                                     std::optional<HttpResponse>* no_route) const {
  const std::vector<std::string> path = Segments(View(request.target()));
  std::string allowed;
  for (const RouteSpec& spec : Routes()) {
    const std::vector<std::string> pattern = Segments(spec.path);
    if (pattern.size() != path.size()) continue;
    std::string segment;
    bool same = true;
    for (size_t i = 0; i < path.size() && same; ++i) {
      if (pattern[i] == "{id}") {
        segment = path[i];
      } else {
        same = pattern[i] == path[i];
      }
    }
    if (!same) continue;
    if (spec.verb == request.method()) {
      *id = std::move(segment);
      return &spec;
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += std::string(http::to_string(spec.verb));
  }
  if (!allowed.empty()) {
    HttpResponse r = ErrorResponse(request, http::status::method_not_allowed, "method_not_allowed",
                                   "this route answers " + allowed);
    r.set(http::field::allow, allowed);
    *no_route = std::move(r);
  } else {
    *no_route = ErrorResponse(request, http::status::not_found, "not_found",
                              "no route " + std::string(View(request.target())));
  }
  return nullptr;
}

HttpResponse Api::StreamAlerts(const HttpRequest& request, const std::string&) {
  if (alerts_->subscribers() >= kMaxSubscribers) {
    return ErrorResponse(request, http::status::service_unavailable, "unavailable",
                         "at most " + std::to_string(kMaxSubscribers) + " alert streams at once");
  }
  // The HTTP server turns a text/event-stream answer into a stream and hands it to AlertLog.
  HttpResponse r(http::status::ok, request.version());
  r.set(http::field::content_type, "text/event-stream");
  r.set(http::field::cache_control, "no-cache");
  return r;
}

HttpResponse Api::Health(const HttpRequest& request, const std::string&) {
  return JsonResponse(request, http::status::ok, "{\"status\":\"ok\"}");
}

HttpResponse Api::Ready(const HttpRequest& request, const std::string&) {
  const bool ready = !kafka_ || kafka_->ready();
  return JsonResponse(request, ready ? http::status::ok : http::status::service_unavailable,
                      std::string("{\"ready\":") + (ready ? "true" : "false") +
                          ",\"patterns\":" + std::to_string(registry_->List().size()) +
                          (kafka_ ? std::string(",\"kafka\":") + (ready ? "\"connected\"" : "\"unreachable\"") : "") +
                          "}");
}

HttpResponse Api::EnablePattern(const HttpRequest& request, const std::string& id) {
  return SetEnabled(request, id, true);
}

HttpResponse Api::DisablePattern(const HttpRequest& request, const std::string& id) {
  return SetEnabled(request, id, false);
}

HttpResponse Api::OpenApi(const HttpRequest& request, const std::string&) {
  std::string doc =
      "{\"openapi\":\"3.0.3\",\"info\":{\"title\":\"vigil\",\"version\":\"0.1.0\","
      "\"description\":\"Complex event processing: patterns, events, alerts.\"},"
      "\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}},"
      "\"schemas\":{\"Error\":{\"type\":\"object\",\"properties\":{\"error\":{\"type\":\"object\","
      "\"properties\":{\"code\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"}}}}}}},"
      "\"paths\":{";
  std::vector<std::string_view> paths;
  for (const RouteSpec& spec : Routes()) {
    if (std::find(paths.begin(), paths.end(), spec.path) == paths.end()) paths.push_back(spec.path);
  }
  for (size_t p = 0; p < paths.size(); ++p) {
    if (p) doc += ',';
    AppendJsonString(&doc, paths[p]);
    doc += ":{";
    bool first = true;
    for (const RouteSpec& spec : Routes()) {
      if (spec.path != paths[p]) continue;
      if (!first) doc += ',';
      first = false;
      std::string method(http::to_string(spec.verb));
      std::transform(method.begin(), method.end(), method.begin(), ::tolower);
      doc.append("\"").append(method).append("\":{\"summary\":");
      AppendJsonString(&doc, spec.summary);
      if (spec.path.find("{id}") != std::string_view::npos) {
        doc += ",\"parameters\":[{\"name\":\"id\",\"in\":\"path\",\"required\":true,"
               "\"schema\":{\"type\":\"string\"}}]";
      }
      if (!spec.request_types.empty()) {
        doc += ",\"requestBody\":{\"required\":true,\"content\":{";
        std::string_view types = spec.request_types;
        bool first_type = true;
        while (!types.empty()) {
          const size_t comma = types.find(',');
          if (!first_type) doc += ',';
          first_type = false;
          AppendJsonString(&doc, types.substr(0, comma));
          doc += ":{}";
          types = comma == std::string_view::npos ? std::string_view() : types.substr(comma + 1);
        }
        doc += "}}";
      }
      doc += ",\"responses\":{";
      for (size_t r = 0; r < spec.responses.size(); ++r) {
        if (r) doc += ',';
        doc.append("\"").append(std::to_string(spec.responses[r].first)).append("\":{\"description\":");
        AppendJsonString(&doc, spec.responses[r].second);
        doc += "}";
      }
      doc += "}}";
    }
    doc += "}";
  }
  doc += "}}";
  return JsonResponse(request, http::status::ok, std::move(doc));
}

std::variant<std::string, HttpResponse> Api::PatternBody(const HttpRequest& request) {
  const std::string_view type = MediaType(request);
  std::string content_type;
  if (type == "application/json") {
    content_type = "application/json";
  } else if (type == "application/yaml" || type == "application/x-yaml" || type == "text/yaml") {
    content_type = "application/yaml";
  } else {
    return ErrorResponse(request, http::status::unsupported_media_type, "unsupported_media_type",
                         "patterns are application/json or application/yaml, not '" +
                             std::string(type) + "'");
  }
  if (request.body().size() > options_.max_pattern_bytes) {
    return ErrorResponse(request, http::status::payload_too_large, "too_large",
                         "a pattern document may have at most " +
                             std::to_string(options_.max_pattern_bytes) + " bytes");
  }
  return content_type;
}

namespace {

// A failed registry change: 404 for an unknown pattern, 500 for storage.
HttpResponse RegistryErrorResponse(const HttpRequest& request, const Status& s) {
  if (s.code() == Status::Code::kNotFound) {
    return ErrorResponse(request, http::status::not_found, "not_found", s.message());
  }
  return ErrorResponse(request, http::status::internal_server_error, "storage", s.message());
}

HttpResponse RefusalResponse(const HttpRequest& request, const PatternRegistry::Refusal& refusal) {
  using Kind = PatternRegistry::Refusal::Kind;
  switch (refusal.kind) {
    case Kind::kAlreadyExists:
      return ErrorResponse(request, http::status::conflict, "already_exists", refusal.message);
    case Kind::kIdMismatch:
      return ErrorResponse(request, http::status::bad_request, "id_mismatch", refusal.message);
    case Kind::kNotFound:
      return ErrorResponse(request, http::status::not_found, "not_found", refusal.message);
    case Kind::kStorage:
      return ErrorResponse(request, http::status::internal_server_error, "storage", refusal.message);
    case Kind::kInvalid:
      break;
  }
  std::string body = "{\"error\":{\"code\":\"invalid_pattern\",\"message\":";
  AppendJsonString(&body, refusal.errors.empty() ? refusal.message : refusal.errors[0].message);
  body += "},";
  AppendErrors(&body, refusal.errors);
  body += "}";
  return JsonResponse(request, http::status::unprocessable_entity, std::move(body));
}

}  // namespace

HttpResponse Api::CreatePattern(const HttpRequest& request, const std::string&) {
  auto type = PatternBody(request);
  if (auto* error = std::get_if<HttpResponse>(&type)) return std::move(*error);
  auto outcome = registry_->Create(request.body(), std::get<std::string>(type));
  if (auto* refusal = std::get_if<PatternRegistry::Refusal>(&outcome)) {
    return RefusalResponse(request, *refusal);
  }
  const auto& change = std::get<PatternRegistry::Change>(outcome);
  std::string body = "{\"id\":";
  AppendJsonString(&body, change.pattern->id);
  body += ",\"version\":" + std::to_string(change.pattern->version) + "}";
  return JsonResponse(request, http::status::created, std::move(body));
}

HttpResponse Api::PutPattern(const HttpRequest& request, const std::string& id) {
  auto type = PatternBody(request);
  if (auto* error = std::get_if<HttpResponse>(&type)) return std::move(*error);
  auto outcome = registry_->Put(id, request.body(), std::get<std::string>(type));
  if (auto* refusal = std::get_if<PatternRegistry::Refusal>(&outcome)) {
    return RefusalResponse(request, *refusal);
  }
  const auto& change = std::get<PatternRegistry::Change>(outcome);
  std::string body = "{\"id\":";
  AppendJsonString(&body, change.pattern->id);
  body += ",\"version\":" + std::to_string(change.pattern->version) +
          ",\"dropped_partial_matches\":" + std::to_string(change.dropped_partial_matches) + "}";
  return JsonResponse(request, change.created ? http::status::created : http::status::ok,
                      std::move(body));
}

HttpResponse Api::GetPattern(const HttpRequest& request, const std::string& id) {
  const StoredPattern* p = registry_->Get(id);
  if (!p) return ErrorResponse(request, http::status::not_found, "not_found", "no pattern '" + id + "'");
  std::string body;
  AppendSummary(&body, *p);
  body += ",\"content_type\":";
  AppendJsonString(&body, p->content_type);
  body += ",\"source\":";
  AppendJsonString(&body, p->source);
  body += ",\"compiled\":" + DescribeNfa(*p->nfa) + "}";
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Api::ListPatterns(const HttpRequest& request, const std::string&) {
  std::string body = "{\"patterns\":[";
  bool first = true;
  for (const StoredPattern* p : registry_->List()) {
    if (!first) body.push_back(',');
    first = false;
    AppendSummary(&body, *p);
    body.push_back('}');
  }
  body += "]}";
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Api::DeletePattern(const HttpRequest& request, const std::string& id) {
  Status s = registry_->Delete(id);
  if (!s.ok()) return RegistryErrorResponse(request, s);
  HttpResponse r(http::status::no_content, request.version());
  r.keep_alive(request.keep_alive());
  r.prepare_payload();
  return r;
}

HttpResponse Api::SetEnabled(const HttpRequest& request, const std::string& id, bool enabled) {
  Status s = registry_->SetEnabled(id, enabled);
  if (!s.ok()) return RegistryErrorResponse(request, s);
  std::string body = "{\"id\":";
  AppendJsonString(&body, id);
  body += std::string(",\"enabled\":") + (enabled ? "true" : "false") + "}";
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Api::ValidatePattern(const HttpRequest& request, const std::string&) {
  auto type = PatternBody(request);
  if (auto* error = std::get_if<HttpResponse>(&type)) return std::move(*error);
  const auto errors = registry_->Validate(request.body());
  if (errors.empty()) return JsonResponse(request, http::status::ok, "{\"valid\":true}");
  std::string body = "{\"valid\":false,";
  AppendErrors(&body, errors);
  body += "}";
  return JsonResponse(request, http::status::unprocessable_entity, std::move(body));
}

HttpResponse Api::PostEvents(const HttpRequest& request, const std::string&) {
  if (kafka_) {
    // Their offsets, and so their exactly-once output, belong to the input topics alone.
    return ErrorResponse(request, http::status::conflict, "kafka_input",
                         "events come from the Kafka input topics (kafka.input.topics), not over HTTP");
  }
  const std::string_view type = MediaType(request);
  if (type != "application/x-ndjson" && type != "application/json" && type != "application/jsonl") {
    return ErrorResponse(request, http::status::unsupported_media_type, "unsupported_media_type",
                         "events are application/x-ndjson or application/json, not '" +
                             std::string(type) + "'");
  }
  IngestResult result = ingest_->Feed(request.body());
  if (result.overloaded) {
    ++events_refused_overloaded_;
    HttpResponse r = ErrorResponse(request, http::status::service_unavailable, "overloaded",
                                   "matching is behind; nothing was taken, send again later");
    r.set(http::field::retry_after, "1");
    return r;
  }
  if (!result.unavailable.empty()) {
    return ErrorResponse(request, http::status::service_unavailable, "unavailable",
                         "events not taken: " + result.unavailable);
  }
  if (!result.malformed_body.empty()) {
    return ErrorResponse(request, http::status::bad_request, "bad_request", result.malformed_body);
  }
  if (Status s = alerts_->Flush(); !s.ok()) {
    return ErrorResponse(request, http::status::internal_server_error, "storage", s.message());
  }
  events_received_ += result.received;
  events_accepted_ += result.accepted;
  std::string body = "{\"accepted\":" + std::to_string(result.accepted) + ",\"rejected\":[";
  for (size_t i = 0; i < result.rejected.size(); ++i) {
    if (i) body.push_back(',');
    body += "{\"index\":" + std::to_string(result.rejected[i].index) + ",\"reason\":";
    AppendJsonString(&body, result.rejected[i].reason);
    body.push_back('}');
  }
  body += "]}";
  events_malformed_ += result.received - result.accepted;
  return JsonResponse(request, http::status::accepted, std::move(body));
}

namespace {

void AppendCheckpointJson(std::string* out, const state::CheckpointMeta& c) {
  *out += "{\"id\":" + std::to_string(c.id);
  *out += ",\"created_ms\":" + std::to_string(c.created_ms);
  *out += ",\"duration_ms\":" + std::to_string(c.duration_ms);
  *out += ",\"bytes\":" + std::to_string(c.bytes);
  *out += ",\"new_bytes\":" + std::to_string(c.new_bytes);
  *out += ",\"keys_written\":" + std::to_string(c.keys_written);
  *out += ",\"input_position\":" + std::to_string(c.input_position);
  *out += "}";
}

}  // namespace

HttpResponse Api::ListCheckpoints(const HttpRequest& request, const std::string&) {
  std::string body = "{\"checkpoints\":[";
  bool first = true;
  for (const state::CheckpointMeta& c : durability_->checkpoints()) {
    if (!first) body.push_back(',');
    first = false;
    AppendCheckpointJson(&body, c);
  }
  body += "]}";
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Api::TakeCheckpoint(const HttpRequest& request, const std::string&) {
  Result<state::CheckpointMeta> taken = durability_->Checkpoint();
  if (!taken.ok()) {
    return ErrorResponse(request, http::status::internal_server_error, "checkpoint_failed",
                         taken.status().message());
  }
  std::string body;
  AppendCheckpointJson(&body, *taken);
  return JsonResponse(request, http::status::created, std::move(body));
}

void Api::AppendStateMetrics(std::string* out) {
  auto metric = [out](const char* name, const char* type, const char* help, auto value) {
    *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    *out += name;
    out->push_back(' ');
    *out += std::to_string(value);
    out->push_back('\n');
  };
  const Durability::Stats& stats = durability_->stats();
  const auto& kept = durability_->checkpoints();
  metric("vigil_checkpoints_total", "counter", "Checkpoints taken by this process.", stats.checkpoints);
  metric("vigil_checkpoint_failures_total", "counter", "Checkpoints that failed (the previous ones still count).",
         stats.failed_checkpoints);
  metric("vigil_checkpoints_kept", "gauge", "Checkpoints on disk.", kept.size());
  metric("vigil_checkpoint_awaiting_commit", "gauge",
         "1 while a checkpoint is written and waits for the commit of its input's output (Kafka).",
         durability_->checkpoint_awaits_commit() ? 1 : 0);
  metric("vigil_checkpoint_last_barrier_seconds", "gauge",
         "How long matching stopped for the last checkpoint (the rest of it is written meanwhile).",
         static_cast<double>(stats.last_barrier_ms) / 1000);
  if (!kept.empty()) {
    const state::CheckpointMeta& last = kept.front();
    metric("vigil_checkpoint_last_duration_seconds", "gauge",
           "From the last checkpoint's barrier to its files written (with Kafka, before the wait for the commit "
           "that lets it count).",
           static_cast<double>(last.duration_ms) / 1000);
    metric("vigil_checkpoint_last_bytes", "gauge", "Size of the last checkpoint's files.", last.bytes);
    metric("vigil_checkpoint_last_new_bytes", "gauge", "Bytes the last checkpoint wrote (the rest it shares).",
           last.new_bytes);
    metric("vigil_checkpoint_last_keys_written", "gauge",
           "Key puts and deletes the last checkpoint wrote, those written ahead of it included.", last.keys_written);
    metric("vigil_checkpoint_age_seconds", "gauge", "Time since the last checkpoint was taken.",
           static_cast<double>(WallClockMs() - last.created_ms) / 1000);
    metric("vigil_checkpoint_last_input_position", "gauge", "Input position the last checkpoint holds.",
           last.input_position);
  }
  metric("vigil_state_disk_bytes", "gauge", "State on disk: the live database and the checkpoints.",
         durability_->state_disk_bytes());
  metric("vigil_input_log_bytes", "gauge", "Input log on disk (trimmed behind the oldest checkpoint).",
         durability_->input_log_bytes());
  metric("vigil_input_position", "gauge", "Last input position taken.", durability_->last_position());
  metric("vigil_recovery_seconds", "gauge", "Time the last start-up took to restore and replay.",
         static_cast<double>(stats.recovery_ms) / 1000);
  metric("vigil_recovery_replayed_records", "gauge", "Input log records replayed at start-up.",
         stats.replayed_records);
  metric("vigil_recovery_recognised_alerts", "gauge",
         "Alerts the replay found again that were written before the restart (not written twice).",
         stats.recognised_alerts);
}

HttpResponse Api::GetAlerts(const HttpRequest& request, const std::string&) {
  size_t limit = 100;
  const std::string_view text = QueryParam(View(request.target()), "limit");
  if (!text.empty()) {
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || ptr != text.data() + text.size() || limit == 0) {
      return ErrorResponse(request, http::status::bad_request, "bad_request",
                           "limit must be a positive integer");
    }
  }
  // A client sees the alerts of the events it has posted, here and in the alerts file.
  matcher_->Sync();
  alerts_->Flush().IgnoreError();
  std::string body = "{\"alerts\":[";
  bool first = true;
  for (const std::string& alert : alerts_->Recent(limit)) {
    if (!first) body.push_back(',');
    first = false;
    body += alert;
  }
  body += "]}";
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Api::Metrics(const HttpRequest& request, const std::string&) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto label = [](std::string_view value) {
    std::string escaped;
    for (char c : value) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      escaped.push_back(c == '\n' ? 'n' : c);
    }
    return escaped;
  };
  metric("vigil_server_events_received_total", "counter", "Events received by POST /events.");
  out += "vigil_server_events_received_total " + std::to_string(events_received_) + "\n";
  metric("vigil_server_events_accepted_total", "counter", "Events matched (received less malformed and late).");
  out += "vigil_server_events_accepted_total " + std::to_string(events_accepted_) + "\n";
  metric("vigil_server_events_rejected_total", "counter", "Events refused: malformed or late.");
  out += "vigil_server_events_rejected_total " + std::to_string(events_malformed_) + "\n";
  metric("vigil_server_overloaded_total", "counter",
         "POST /events bodies refused with 503 (Retry-After) because matching was behind.");
  out += "vigil_server_overloaded_total " + std::to_string(events_refused_overloaded_) + "\n";
  metric("vigil_audit_records_total", "counter", "Lines written to the audit log.");
  out += "vigil_audit_records_total " + std::to_string(audit_->records()) + "\n";
  metric("vigil_audit_write_errors_total", "counter", "Audit lines that could not be written.");
  out += "vigil_audit_write_errors_total " + std::to_string(audit_->write_errors()) + "\n";
  metric("vigil_nfa_late_events_total", "counter", "Events that arrived below the watermark.");
  out += "vigil_nfa_late_events_total " + std::to_string(alerts_->late_events()) + "\n";
  metric("vigil_nfa_matches_total", "counter", "Matches found, by pattern.");
  for (const auto& [id, n] : alerts_->matches_by_pattern()) {
    out += "vigil_nfa_matches_total{pattern=\"" + label(id) + "\"} " + std::to_string(n) + "\n";
  }
  metric("vigil_pattern_cpu_seconds_total", "counter",
         "Matching time of each pattern version, estimated from sampled events, over all workers.");
  for (const nfa::Matcher::PatternCost& cost : matcher_->PatternCosts()) {
    out += "vigil_pattern_cpu_seconds_total{pattern=\"" + label(cost.nfa->pattern().id) + "\",version=\"" +
           std::to_string(cost.nfa->pattern().version) + "\"} ";
    AppendJsonNumber(&out, static_cast<double>(cost.cpu_ns()) / 1e9);
    out += "\n";
  }
  if (cpu_budget_) {
    metric("vigil_pattern_cpu_budget_disabled_total", "counter",
           "Patterns disabled for costing more CPU per event than events.max_pattern_cpu_us_per_event.");
    out += "vigil_pattern_cpu_budget_disabled_total " + std::to_string(cpu_budget_->disabled()) + "\n";
  }
  metric("vigil_nfa_timeouts_total", "counter", "Timed-out partial matches reported, by pattern.");
  for (const auto& [id, n] : alerts_->timeouts_by_pattern()) {
    out += "vigil_nfa_timeouts_total{pattern=\"" + label(id) + "\"} " + std::to_string(n) + "\n";
  }
  metric("vigil_nfa_events_without_key_total", "counter",
         "Events a pattern skipped because they lack its key field, by pattern.");
  for (const auto& [id, n] : alerts_->unkeyed_by_pattern()) {
    out += "vigil_nfa_events_without_key_total{pattern=\"" + label(id) + "\"} " + std::to_string(n) + "\n";
  }
  // Observe() is a barrier; while the workers are behind it would hold this thread (and every
  // other client) until they catch up, so the last observation is shown instead.
  const bool behind = matcher_->behind();
  if (!behind || !last_observation_) last_observation_ = matcher_->Observe();
  const engine::ShardedMatcher::Observation& seen = *last_observation_;
  metric("vigil_engine_behind", "gauge",
         "1 while the workers are behind (POST /events may answer 503); the engine's figures below "
         "are then from the last scrape before.");
  out += std::string("vigil_engine_behind ") + (behind ? "1" : "0") + "\n";
  metric("vigil_nfa_partial_matches", "gauge", "Partial matches held, by pattern.");
  for (const auto& [id, n] : seen.partial_matches) {
    out += "vigil_nfa_partial_matches{pattern=\"" + label(id) + "\"} " + std::to_string(n) + "\n";
  }
  metric("vigil_nfa_keys", "gauge", "Keys holding partial matches, over all patterns.");
  out += "vigil_nfa_keys " + std::to_string(seen.active_keys) + "\n";
  metric("vigil_nfa_dropped_partial_matches_total", "counter",
         "Partial matches dropped because a key held more than the limit.");
  out += "vigil_nfa_dropped_partial_matches_total " +
         std::to_string(seen.totals.dropped_partial_matches) + "\n";
  metric("vigil_nfa_expired_partial_matches_total", "counter",
         "Partial matches of patterns without a window dropped at the maximum state age (state.max_age).");
  out += "vigil_nfa_expired_partial_matches_total " +
         std::to_string(seen.totals.expired_partial_matches) + "\n";
  metric("vigil_state_memory_bytes", "gauge",
         "Memory the matching state takes (estimate: retained events, shared-buffer nodes, key records).");
  out += "vigil_state_memory_bytes " + std::to_string(seen.memory_bytes) + "\n";
  metric("vigil_state_spilled_keys", "gauge", "Keys whose state waits on disk (state.memory_budget_bytes).");
  out += "vigil_state_spilled_keys " + std::to_string(seen.spilled_keys) + "\n";
  metric("vigil_state_evictions_total", "counter", "Keys moved out of memory to stay within the budget.");
  out += "vigil_state_evictions_total " + std::to_string(seen.totals.keys_spilled) + "\n";
  metric("vigil_state_read_backs_total", "counter", "Keys brought back to memory from disk.");
  out += "vigil_state_read_backs_total " + std::to_string(seen.totals.keys_read_back) + "\n";
  metric("vigil_state_lost_keys_total", "counter", "Keys whose state on disk could not be read back.");
  out += "vigil_state_lost_keys_total " + std::to_string(seen.totals.keys_lost) + "\n";
  AppendWorkerMetrics(&out, seen.workers, metric);
  AppendStateMetrics(&out);
  if (kafka_) kafka_->AppendMetrics(&out);
  if (rules_) {
    metric("vigil_kafka_rules_applied_total", "counter", "Rules topic records applied.");
    out += "vigil_kafka_rules_applied_total " + std::to_string(rules_->applied()) + "\n";
    metric("vigil_kafka_rules_refused_total", "counter",
           "Rules topic records that are not valid patterns: logged, never applied.");
    out += "vigil_kafka_rules_refused_total " + std::to_string(rules_->refused()) + "\n";
  }
  metric("vigil_server_patterns", "gauge", "Stored patterns.");
  out += "vigil_server_patterns " + std::to_string(registry_->List().size()) + "\n";
  metric("vigil_server_requests_total", "counter", "HTTP requests by route and status.");
  for (const auto& [key, n] : requests_) {
    out += "vigil_server_requests_total{route=\"" + label(key.first) + "\",code=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  alerts_->latency().AppendPrometheus(&out, "vigil_server_ingest_to_alert_seconds",
                                      "Time from the arrival of a POST /events to each alert it produced.");
  metric("vigil_process_resident_memory_bytes", "gauge", "Resident memory of the process.");
  out += "vigil_process_resident_memory_bytes " + std::to_string(ResidentBytes()) + "\n";
  HttpResponse r(http::status::ok, request.version());
  r.set(http::field::content_type, "text/plain; version=0.0.4");
  r.keep_alive(request.keep_alive());
  r.body() = std::move(out);
  r.prepare_payload();
  return r;
}

}  // namespace vigil::server
