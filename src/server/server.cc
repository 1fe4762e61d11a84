#include "server/server.h"

#include <algorithm>
#include <cstdio>
#include <csignal>
#include <filesystem>

#include "common/files.h"
#include "common/time_util.h"

namespace vigil::server {
namespace fs = std::filesystem;

Server::Server(ServerOptions options)
    : options_(std::move(options)), signals_(io_, SIGINT, SIGTERM), grace_(io_), tick_(io_) {
  engine::EngineOptions engine_options;
  engine_options.workers =
      options_.workers > 0 ? options_.workers : std::min(engine::AvailableCpus(), engine::kMaxWorkers);
  if (options_.max_events_in_flight > 0) {
    engine_options.chunks = std::max<size_t>(
        2, (options_.max_events_in_flight + engine_options.events_per_chunk - 1) / engine_options.events_per_chunk);
  }
  engine_options.matcher.max_out_of_orderness_ms = options_.max_out_of_orderness_ms;
  engine_options.matcher.max_partial_matches_per_key = options_.max_partial_matches_per_key;
  engine_options.matcher.max_partial_matches_per_pattern = options_.max_partial_matches_per_pattern;
  engine_options.matcher.track_changes = true;
  engine_options.matcher.max_state_age_ms = options_.max_state_age_ms;
  engine_options.several_sources = !options_.kafka.brokers.empty();
  if (options_.memory_budget_bytes > 0) {
    spill_ = std::make_unique<state::SpillStore>((fs::path(options_.data_dir) / "spill").string(),
                                                 engine_options.workers);
    engine_options.matcher.memory_budget_bytes = options_.memory_budget_bytes;
    for (size_t i = 0; i < engine_options.workers; ++i) engine_options.spills.push_back(spill_->worker(i));
  }
  alerts_ = std::make_unique<AlertLog>(io_, options_.recent_alerts, engine_options.workers);
  std::vector<engine::WorkerSink*> sinks;
  for (size_t i = 0; i < engine_options.workers; ++i) sinks.push_back(alerts_->worker_sink(i));
  engine_options.time_field = options_.time_field;
  if (!options_.kafka.brokers.empty() && options_.kafka.record_time) {
    engine_options.time_field = KafkaPipeline::kRecordTimeField;
  }
  matcher_ = std::make_unique<engine::ShardedMatcher>(std::vector<std::shared_ptr<const nfa::Nfa>>{},
                                                      &schema_, engine_options, alerts_.get(), sinks);
  Durability::Options durability;
  durability.data_dir = options_.data_dir;
  durability.checkpoint_interval_ms = options_.checkpoint_interval_ms;
  durability.checkpoints_retained = options_.checkpoints_retained;
  // With Kafka, the log is synced once per commit instead (KafkaPipeline).
  durability.input_log_fsync = options_.input_log_fsync && options_.kafka.brokers.empty();
  durability_ = std::make_unique<Durability>(durability, matcher_.get(), &schema_, alerts_.get(), spill_.get());
  if (!options_.kafka.brokers.empty()) {
    kafka_ = std::make_unique<KafkaPipeline>(options_.kafka, options_.input_log_fsync, io_, matcher_.get(),
                                             durability_.get(), alerts_.get());
  }
  registry_ = std::make_unique<PatternRegistry>((fs::path(options_.data_dir) / "patterns").string(),
                                                &schema_, matcher_.get());
  if (kafka_) rules_ = std::make_unique<RulesTopic>(options_.kafka, registry_.get());
  ingest_ = std::make_unique<Ingest>(matcher_.get(), alerts_.get(), durability_.get());
  api_ = std::make_unique<Api>(options_, registry_.get(), ingest_.get(), alerts_.get(), matcher_.get(),
                               durability_.get(), &audit_);
  api_->SetKafka(kafka_.get(), rules_.get());
  cpu_budget_ = std::make_unique<PatternCpuBudget>(options_.max_pattern_cpu_us_per_event * 1000, matcher_.get(),
                                                   registry_.get(), &audit_);
  api_->SetCpuBudget(cpu_budget_.get());
  HttpServer::Limits limits;
  limits.max_body_bytes = options_.max_body_bytes;
  limits.max_connections = options_.max_connections;
  limits.max_connections_per_client = options_.max_connections_per_client;
  limits.request_timeout = std::chrono::milliseconds(options_.request_timeout_ms);
  http_ = std::make_unique<HttpServer>(
      io_, limits, [this](const HttpRequest& r, std::string_view client) { return api_->Handle(r, client); },
      [this](std::shared_ptr<EventStream> stream) { alerts_->Subscribe(std::move(stream)); });
}

Server::~Server() = default;

// Files in the patterns directory are applied at start-up as PUTs; a document whose stored
// source is the same keeps its version (and its partial matches).
Status Server::LoadPatternsDirectory(std::vector<std::string>* warnings) {
  if (options_.patterns_dir.empty()) return Status::Ok();
  std::error_code ec;
  if (!fs::is_directory(options_.patterns_dir, ec)) {
    return Status::InvalidArgument("patterns_dir '" + options_.patterns_dir + "' is not a directory");
  }
  for (const std::string& file : FilesIn(options_.patterns_dir, nfa::kPatternFileExtensions)) {
    Result<std::string> text = ReadFile(file);
    if (!text.ok()) {
      warnings->push_back(text.status().message());
      continue;
    }
    nfa::FieldSchema scratch_schema;  // only to split the file into its documents
    nfa::ParsedPatterns parsed = nfa::ParsePatterns(*text, file, &scratch_schema);
    for (const nfa::PatternError& e : parsed.errors) warnings->push_back(e.ToString());
    const std::string type =
        fs::path(file).extension() == ".json" ? "application/json" : "application/yaml";
    for (const nfa::Pattern& p : parsed.patterns) {
      const StoredPattern* stored = registry_->Get(p.id);
      if (stored && stored->source == p.source) continue;
      auto outcome = registry_->Put(p.id, p.source, type);
      if (auto* refusal = std::get_if<PatternRegistry::Refusal>(&outcome)) {
        warnings->push_back(file + ": pattern " + p.id + ": " + refusal->message);
      }
    }
  }
  return Status::Ok();
}

Status Server::Start(std::vector<std::string>* warnings) {
  if (Status s = alerts_->Open(options_.alerts_file,
                               (fs::path(options_.data_dir) / "late-events.ndjson").string(),
                               options_.alerts_max_file_bytes, options_.alerts_keep_files);
      !s.ok()) {
    return s;
  }
  if (Status s = audit_.Open(options_.audit_log_file); !s.ok()) return s;
  if (kafka_) {
    if (Status s = kafka_->Prepare(); !s.ok()) return s;
  }
  if (Status s = durability_->Recover(warnings); !s.ok()) return s;
  for (std::string& e : registry_->Load()) warnings->push_back(std::move(e));
  if (rules_) {
    // The rules topic is the patterns' source of truth: what it holds wins over the stored
    // copies, and the patterns directory's files are published to it.
    if (Status s = rules_->Open(); !s.ok()) return s;
    registry_->SetPublisher(rules_.get());
  }
  if (Status s = LoadPatternsDirectory(warnings); !s.ok()) return s;
  // From here on the state is what the checkpoints must hold; pattern changes take effect at
  // one input position, which a checkpoint then records.
  if (Result<state::CheckpointMeta> c = durability_->Checkpoint(); !c.ok()) return c.status();
  PatternRegistry::Hooks hooks;
  hooks.record = [this](const std::string& id, const std::shared_ptr<const nfa::Nfa>& live) {
    return durability_->LogPatternChange(id, live);
  };
  // Not needed for recovery (the change is in the input log), but it keeps replays short.
  hooks.applied = [this] {
    if (Result<state::CheckpointMeta> c = durability_->Checkpoint(); !c.ok()) {
      std::fprintf(stderr, "vigil: checkpoint after a pattern change failed: %s\n", c.status().message().c_str());
    }
  };
  registry_->SetHooks(std::move(hooks));
  if (kafka_) {
    if (Status s = kafka_->Start(); !s.ok()) return s;
  }
  if (!options_.tls_cert_file.empty()) {
    if (Status s = http_->EnableTls(options_.tls_cert_file, options_.tls_key_file); !s.ok()) return s;
  }
  if (Status s = http_->Listen(options_.listen_address, options_.port); !s.ok()) return s;
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) Stop();
  });
  ScheduleTick();
  return Status::Ok();
}

// Every tick, alerts the workers found since the last are written to the alerts file. And a
// live stream can go quiet; its last windows would then never close. Once no event has come
// for idle_timeout, event time is taken to follow the wall clock from the last event on: the
// watermark becomes (largest event time + wall time since the last event - allowed lateness).
void Server::ScheduleTick() {
  tick_.expires_after(std::chrono::milliseconds(200));
  tick_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    const int64_t last = ingest_->last_event_steady_ms();
    const int64_t now = SteadyClockMs();
    if (options_.idle_timeout_ms > 0 && last > 0 && now - last >= options_.idle_timeout_ms) {
      const int64_t quiet_for = now - last;
      // Logged: a replay must advance it at the same input position.
      durability_->AdvanceWatermark(SaturatingSub(SaturatingAdd(matcher_->max_event_time_ms(), quiet_for),
                                                  options_.max_out_of_orderness_ms))
          .IgnoreError();
    }
    alerts_->Flush().IgnoreError();
    if (rules_) rules_->Poll(0);
    durability_->CollectCheckpoint();
    durability_->WriteAheadIfDue(matcher_->behind());
    // With Kafka away, a worker may wait on the producer's full queue, and a barrier with it.
    if (!kafka_ || kafka_->ready()) durability_->CheckpointIfDue(matcher_->behind());
    ReportDroppedPartialMatches(now);
    cpu_budget_->Check(now);
    ScheduleTick();
  });
}

// Partial matches dropped at the limits are counted in /metrics; the log says when it happens,
// at most every 10 s.
void Server::ReportDroppedPartialMatches(int64_t now_ms) {
  // Observe() is a barrier: it holds this thread until the workers have matched every event in
  // flight, which with a slow pattern is milliseconds an event. So it waits for a moment with
  // little in flight (about one chunk).
  constexpr size_t kMostInFlight = 256;
  if (now_ms - last_limit_report_ms_ < 10000 || matcher_->room_at_most() - matcher_->room_now() > kMostInFlight) {
    return;
  }
  last_limit_report_ms_ = now_ms;
  const uint64_t dropped = matcher_->Observe().totals.dropped_partial_matches;
  if (dropped > dropped_reported_) {
    std::fprintf(stderr,
                 "vigil: %llu partial matches dropped at the limits of partial matches per key and per "
                 "pattern in the last 10 s\n",
                 static_cast<unsigned long long>(dropped - dropped_reported_));
  }
  dropped_reported_ = dropped;
}

void Server::Run() {
  io_.run();
  // The alerts of every accepted event reach the file, and a restart starts from here.
  if (Result<state::CheckpointMeta> c = durability_->Checkpoint(); !c.ok()) {
    std::fprintf(stderr, "vigil: checkpoint at shutdown failed: %s\n", c.status().message().c_str());
  }
  // Also when that failed before its barrier (a commit the broker refused): every alert found
  // is in the file before the process goes.
  if (Status s = alerts_->Flush(); !s.ok()) {
    std::fprintf(stderr, "vigil: writing the alerts file at shutdown failed: %s\n", s.message().c_str());
  }
}

void Server::Stop() {
  if (kafka_) kafka_->Stop();
  http_->StopAccepting();
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  tick_.cancel(ignored);
  // Requests are handled whole on this thread, so none is half-handled here; responses being
  // written get a short grace period, idle keep-alive connections do not hold the exit.
  grace_.expires_after(std::chrono::milliseconds(500));
  grace_.async_wait([this](const boost::system::error_code&) { io_.stop(); });
}

}  // namespace vigil::server
