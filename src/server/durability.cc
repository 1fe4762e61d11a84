#include "server/durability.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "common/byte_codec.h"
#include "common/time_util.h"
#include "nfa/compiler.h"
#include "nfa/pattern.h"

namespace vigil::server {
namespace fs = std::filesystem;

Durability::Durability(Options options, engine::ShardedMatcher* matcher, nfa::FieldSchema* schema,
                       AlertLog* alerts, state::SpillStore* spill)
    : options_(std::move(options)), matcher_(matcher), schema_(schema), alerts_(alerts), spill_(spill) {}

Durability::~Durability() {
  // The workers may be writing ahead into the store's writers, which go with this object.
  matcher_->StopWritingAhead();
}

Result<std::shared_ptr<const nfa::Nfa>> Durability::Compile(const state::SavedPattern& saved) {
  nfa::ParsedPatterns parsed =
      nfa::ParsePatterns(saved.source, "stored pattern " + saved.id, schema_, nfa::PatternOrigin::kStored);
  if (!parsed.errors.empty() || parsed.patterns.size() != 1 || parsed.patterns[0].id != saved.id) {
    return Status::Corruption("stored pattern '" + saved.id + "' no longer compiles");
  }
  parsed.patterns[0].version = saved.version;
  auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(parsed.patterns[0])));
  if (!compiled.ok()) return compiled.status();
  return compiled.value();
}

namespace {

// A logged pattern change: 'l' (live from here on) with id, version and source, or 'g' (gone
// from the matcher) with the id.
std::string EncodePatternChange(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live) {
  std::string out(1, live ? 'l' : 'g');
  PutBytes(&out, id);
  if (live) {
    PutVarint(&out, live->pattern().version);
    PutBytes(&out, live->pattern().source);
  }
  return out;
}

bool IsPatternChange(std::string_view control) {
  return !control.empty() && (control[0] == 'l' || control[0] == 'g');
}

}  // namespace

Status Durability::ReplayPatternChange(std::string_view change) {
  ByteReader in(change.substr(std::min<size_t>(1, change.size())));
  state::SavedPattern saved;
  saved.id = in.Bytes();
  const bool live = !change.empty() && change[0] == 'l';
  if (live) {
    saved.version = in.Varint();
    saved.source = in.Bytes();
  }
  if (!in.done() || change.empty() || (change[0] != 'l' && change[0] != 'g')) {
    return Status::Corruption("the input log holds an unreadable pattern change");
  }
  const auto& present = matcher_->patterns();
  const auto it = std::find_if(present.begin(), present.end(),
                               [&](const auto& nfa) { return nfa->pattern().id == saved.id; });
  if (!live) return it == present.end() ? Status::Ok() : matcher_->RemovePattern(saved.id).status();
  if (it != present.end() && (*it)->pattern().version == saved.version && (*it)->pattern().source == saved.source) {
    return Status::Ok();
  }
  Result<std::shared_ptr<const nfa::Nfa>> nfa = Compile(saved);
  if (!nfa.ok()) return nfa.status();
  return it == present.end() ? matcher_->AddPattern(*nfa) : matcher_->ReplacePattern(*nfa).status();
}

Status Durability::LogPatternChange(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live) {
  return LogControl(EncodePatternChange(id, live));
}

Status Durability::Restore(const state::CheckpointMeta& meta) {
  for (const state::SavedPattern& saved : meta.patterns) {
    Result<std::shared_ptr<const nfa::Nfa>> nfa = Compile(saved);
    if (!nfa.ok()) return nfa.status();
    if (Status s = matcher_->AddPattern(*nfa); !s.ok()) return s;
  }
  Result<std::unique_ptr<state::CheckpointStore::Reader>> reader = store_->OpenReader(meta.id);
  if (!reader.ok()) return reader.status();
  Status restored = matcher_->Restore(meta.engine_progress, [&reader](const engine::ShardedMatcher::KeyVisitor& visit) {
    return (*reader)->Scan(visit);
  });
  if (!restored.ok() || meta.input_progress.empty() || !replay_hooks_.control) return restored;
  return replay_hooks_.control(meta.input_progress);
}

Status Durability::Recover(std::vector<std::string>* warnings) {
  const int64_t started = SteadyClockMs();
  Result<std::unique_ptr<state::CheckpointStore>> store =
      state::CheckpointStore::Open({(fs::path(options_.data_dir) / "state").string(), options_.checkpoints_retained});
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  if (spill_) {
    if (Status s = spill_->Open(store_.get()); !s.ok()) return s;
  }
  state::InputLog::Options log_options;
  log_options.directory = (fs::path(options_.data_dir) / "input").string();
  log_options.fsync = options_.input_log_fsync;
  Result<std::unique_ptr<state::InputLog>> log = state::InputLog::Open(log_options, warnings);
  if (!log.ok()) return log.status();
  log_ = std::move(*log);

  uint64_t from = 0;
  std::string output_position;
  bool restored = false;
  for (state::CheckpointStore::Listed& candidate : store_->Candidates()) {
    Status s = candidate.meta.ok() ? Restore(*candidate.meta) : candidate.meta.status();
    if (!s.ok()) {
      warnings->push_back("checkpoint " + std::to_string(candidate.id) + " skipped: " + s.message());
      matcher_->Reset();
      continue;
    }
    if (Status adopted = store_->Adopt(candidate.id); !adopted.ok()) return adopted;
    from = candidate.meta->input_position;
    output_position = candidate.meta->output_position;
    restored = true;
    break;
  }
  if (!restored) {
    if (Status s = store_->StartEmpty(); !s.ok()) return s;
  }
  if (log_->first_position() > from + 1) {
    warnings->push_back("the input log starts at position " + std::to_string(log_->first_position()) +
                        " but the state restored holds the input up to " + std::to_string(from) +
                        " only: what came between is lost (it was trimmed behind checkpoints that no "
                        "longer load)");
  }
  if (Result<size_t> ids = alerts_->Reconcile(output_position); !ids.ok()) return ids.status();
  Status replayed = log_->Read(from, [this](const state::InputLog::Record& r) {
    ++stats_.replayed_records;
    if (replay_hooks_.before_record) replay_hooks_.before_record(r.position);
    switch (r.kind) {
      case state::InputLog::Kind::kEvent:
        matcher_->Add(r.text, r.position);
        break;
      case state::InputLog::Kind::kWatermark:
        matcher_->AdvanceWatermark(r.watermark_ms);
        break;
      case state::InputLog::Kind::kSourcedEvent:
        matcher_->Add(r.text, r.position, 0, r.source);
        break;
      case state::InputLog::Kind::kControl:
        if (IsPatternChange(r.text)) return ReplayPatternChange(r.text);
        return replay_hooks_.control ? replay_hooks_.control(r.text) : Status::Ok();
    }
    return Status::Ok();
  });
  if (!replayed.ok()) return replayed;
  matcher_->Sync();
  alerts_->Flush().IgnoreError();
  stats_.recognised_alerts = alerts_->EndReconcile();
  last_position_ = std::max(from, log_->last_position());
  stats_.recovery_ms = SteadyClockMs() - started;
  last_checkpoint_steady_ms_ = SteadyClockMs();
  return Status::Ok();
}

Result<uint64_t> Durability::LogEvents(std::span<const std::string_view> texts) {
  const uint64_t first = last_position_ + 1;
  uint64_t position = first;
  for (const std::string_view text : texts) log_->AppendEvent(position++, text);
  if (Status s = log_->Commit(); !s.ok()) return s;
  last_position_ = position - 1;
  return first;
}

Result<uint64_t> Durability::LogSourcedEvents(std::span<const std::pair<uint32_t, std::string_view>> events,
                                              std::string_view control) {
  const uint64_t first = last_position_ + 1;
  uint64_t position = first;
  for (const auto& [source, text] : events) log_->AppendSourcedEvent(position++, source, text);
  if (!control.empty()) log_->AppendControl(position++, control);
  if (Status s = log_->Commit(); !s.ok()) return s;
  last_position_ = position - 1;
  return first;
}

Status Durability::LogControl(std::string_view control) {
  log_->AppendControl(last_position_ + 1, control);
  if (Status s = log_->Commit(); !s.ok()) return s;
  ++last_position_;
  return Status::Ok();
}

Status Durability::AdvanceWatermark(int64_t watermark_ms) {
  if (watermark_ms <= matcher_->watermark_ms()) return Status::Ok();
  log_->AppendWatermark(last_position_ + 1, watermark_ms);
  if (Status s = log_->Commit(); !s.ok()) return s;
  ++last_position_;
  matcher_->AdvanceWatermark(watermark_ms);
  return Status::Ok();
}

Result<state::CheckpointMeta> Durability::Checkpoint() {
  if (writing_.valid()) FinishCheckpoint().status().IgnoreError();
  if (before_checkpoint_) {
    if (Status s = before_checkpoint_(); !s.ok()) {
      ++stats_.failed_checkpoints;  // nothing written yet: the next need not write everything
      return s;
    }
  }
  // The hook committed the output so far: one that waited for it counts first.
  if (written_) KeepWritten().status().IgnoreError();
  if (Status s = StartCheckpoint(); !s.ok()) return s;
  return FinishCheckpoint();
}

Status Durability::CheckpointFailed(Status status) {
  ++stats_.failed_checkpoints;
  write_everything_ = true;  // the changes it took are in no checkpoint
  last_checkpoint_steady_ms_ = SteadyClockMs();
  return status;
}

Status Durability::StartCheckpoint() {
  if (CheckpointUnderWay()) return Status::Unavailable("a checkpoint is being written or waits for its commit");
  const int64_t started = SteadyClockMs();
  state::CheckpointMeta meta;
  Result<std::string> progress = matcher_->Checkpoint(store_->Writers(matcher_->workers()), write_everything_);
  if (!progress.ok()) return CheckpointFailed(progress.status());
  store_->Seal();
  meta.engine_progress = std::move(*progress);
  stats_.last_barrier_ms = SteadyClockMs() - started;
  // Every alert of the input up to here was found at the barrier; on disk with the checkpoint.
  if (Status s = alerts_->Flush(); !s.ok()) return CheckpointFailed(s);
  meta.output_position = alerts_->OutputPosition();
  meta.input_position = last_position_;
  if (input_progress_) meta.input_progress = input_progress_();
  meta.created_ms = WallClockMs();
  for (const auto& nfa : matcher_->patterns()) {
    meta.patterns.push_back({nfa->pattern().id, nfa->pattern().version, nfa->pattern().source});
  }
  writing_ = std::async(std::launch::async, [this, meta = std::move(meta), started]() mutable {
    return store_->Write(std::move(meta), started);
  });
  return Status::Ok();
}

void Durability::CollectCheckpoint() {
  if (writing_.valid() && writing_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    FinishCheckpoint().status().IgnoreError();
  } else if (written_) {
    KeepWritten().status().IgnoreError();
  }
}

Result<state::CheckpointMeta> Durability::FinishCheckpoint() {
  Result<state::CheckpointMeta> written = writing_.get();
  if (!written.ok()) return CheckpointFailed(written.status());
  written_ = std::move(*written);
  return KeepWritten();
}

Result<state::CheckpointMeta> Durability::KeepWritten() {
  if (keep_after_commit_ && committed_output_ < written_->input_position) {
    return Status::Unavailable("the checkpoint waits for the commit of its input's output");
  }
  state::CheckpointMeta kept = std::move(*written_);
  written_.reset();
  if (Status s = store_->Keep(kept); !s.ok()) return CheckpointFailed(s);
  last_checkpoint_steady_ms_ = SteadyClockMs();
  write_everything_ = false;
  ++stats_.checkpoints;
  // Restoring may fall back to the oldest checkpoint kept: keep the input after it.
  log_->TrimThrough(store_->checkpoints().back().input_position).IgnoreError();
  return kept;
}

bool Durability::CheckpointDue() const {
  if (CheckpointUnderWay()) return false;
  if (SteadyClockMs() - last_checkpoint_steady_ms_ < options_.checkpoint_interval_ms) return false;
  // Nothing came in since the last (pattern changes take their own): nothing to record.
  return write_everything_ || checkpoints().empty() || checkpoints().front().input_position != last_position_;
}

void Durability::WriteAheadIfDue(bool matching_behind) {
  // After a failed checkpoint the next writes every key at its barrier anyway; while one is
  // being written (or waits for its commit) the next is not due for a whole interval; and
  // while matching is behind the next may wait (CheckpointIfDue) and the workers have no time
  // to spare.
  if (write_everything_ || CheckpointUnderWay() || matching_behind) return;
  const int64_t lead = std::min(options_.checkpoint_interval_ms / 2, kWriteAheadLeadMs);
  if (SteadyClockMs() - last_checkpoint_steady_ms_ < options_.checkpoint_interval_ms - lead) return;
  matcher_->WriteAhead(store_->Writers(matcher_->workers()));
}

void Durability::CheckpointIfDue(bool matching_behind) {
  // The barrier would hold the server's thread until the workers' backlog drains; give the
  // backlog up to three intervals to drain by itself first.
  if (matching_behind && SteadyClockMs() - last_checkpoint_steady_ms_ < 3 * options_.checkpoint_interval_ms) {
    return;
  }
  if (CheckpointDue()) StartCheckpoint().IgnoreError();
}

}  // namespace vigil::server
