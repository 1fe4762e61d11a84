#pragma once
// Durability: what makes a crash of `vigil serve`, kill -9 included, lose no accepted event
// and write no alert twice.
//
//  1. Accepted means durable: the events of a request are numbered with input positions
//     (increasing over the life of the data directory) and appended to the input log before
//     the matcher sees them and before the request is answered. Watermark advances that come
//     from no event (the idle clock) and pattern changes are logged too, at their positions,
//     so a replay decides as the first run did.
//  2. Checkpoints: at one input position (an engine barrier) every worker writes the keys that
//     changed since the last checkpoint into a batch in memory, most of them already written
//     ahead in the moments before (WriteAheadIfDue), so the barrier is short; then the alerts
//     found so far are flushed, and the checkpoint store records, on a thread of its own while
//     matching goes on, that batch with the engine's progress, that position, the alert
//     output's position and the patterns. Taken every checkpoint.interval, at every pattern
//     change, on request and on shutdown. The input log is trimmed behind the oldest checkpoint
//     kept. With output committed apart (Kafka), a checkpoint counts only once the output of
//     the input it holds is committed (see KeepAfterCommit).
//  3. Recovery: the newest checkpoint that loads is restored (an older one when it does not),
//     under the patterns it was taken with; the alert output reads the ids it wrote after that
//     checkpoint; the input log is replayed from the checkpoint's position; then the pattern
//     registry brings the patterns up to date, as hot reloads would. Alert ids are
//     deterministic, so the replay writes exactly the alerts that the crash lost.
// Not thread-safe: the server's thread.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "nfa/field_schema.h"
#include "server/alert_log.h"
#include "state/checkpoint_store.h"
#include "state/input_log.h"
#include "state/spill_store.h"

namespace vigil::server {

class Durability {
 public:
  struct Options {
    std::string data_dir;
    int64_t checkpoint_interval_ms = 10000;
    size_t checkpoints_retained = 3;
    bool input_log_fsync = false;
  };

  struct Stats {
    int64_t recovery_ms = 0;
    uint64_t replayed_records = 0;
    uint64_t recognised_alerts = 0;  // written before the crash, not written again
    uint64_t checkpoints = 0;        // taken by this process
    uint64_t failed_checkpoints = 0;
    int64_t last_barrier_ms = 0;  // of the last checkpoint: how long matching stopped for it
  };

  // The matcher must have no patterns and no events yet (Recover fills it). `spill`: the
  // matcher's, when it has a memory budget (opened by Recover), else null.
  Durability(Options options, engine::ShardedMatcher* matcher, nfa::FieldSchema* schema,
             AlertLog* alerts, state::SpillStore* spill);
  ~Durability();

  // Start-up: restores the newest checkpoint that loads and replays the input log after it.
  // What was skipped or cut (and why) goes to *warnings. Errors: the input log or the
  // checkpoint directory cannot be opened, or the log is damaged.
  Status Recover(std::vector<std::string>* warnings);

  // Numbers the events of one request and logs them; returns the position of the first (the
  // others follow one by one). Errors: kIoError (nothing of the request counts).
  Result<uint64_t> LogEvents(std::span<const std::string_view> texts);
  // The same for events from several sources (Kafka partitions), then `control` (where the
  // sources stand after them; empty: none), in one commit; returns the first event's position.
  Result<uint64_t> LogSourcedEvents(std::span<const std::pair<uint32_t, std::string_view>> events,
                                    std::string_view control);
  // Logs a control record of the caller's (not starting with 'l' or 'g': pattern changes').
  Status LogControl(std::string_view control);

  // What a replay hands back to the caller: before each record, its position; and the control
  // records the caller logged. Set before Recover.
  struct ReplayHooks {
    std::function<void(uint64_t position)> before_record;
    std::function<Status(std::string_view control)> control;
  };
  void SetReplayHooks(ReplayHooks hooks) { replay_hooks_ = std::move(hooks); }
  // Called first by Checkpoint() (at start-up, after pattern changes, on request and at
  // shutdown; not by the periodic ones); its error fails the checkpoint. Kafka commits the
  // output so far, so that such a checkpoint counts at once.
  void SetBeforeCheckpoint(std::function<Status()> hook) { before_checkpoint_ = std::move(hook); }
  // Output committed apart from the checkpoints (Kafka): a checkpoint must not count while
  // the output of the input it holds may still be lost (a transaction a crash aborts, a
  // record never delivered), since a restart would not make that output again. So a
  // periodic checkpoint, taken without waiting for a commit (the input stops for its barrier
  // only), is written and then waits, under its temporary name, until OutputCommitted passes
  // its input position; a crash before that drops it, and recovery starts from the one
  // before. No other checkpoint starts meanwhile. Before Recover.
  void KeepAfterCommit() { keep_after_commit_ = true; }
  // The output of the input up to `position` is committed.
  void OutputCommitted(uint64_t position) { committed_output_ = std::max(committed_output_, position); }
  // A checkpoint is written and waits for the commit of its output (KeepAfterCommit).
  bool checkpoint_awaits_commit() const { return written_.has_value(); }
  // Where the input's sources stand (Kafka: partitions and offsets), recorded with every
  // checkpoint and handed to ReplayHooks::control when that checkpoint is restored.
  void SetInputProgress(std::function<std::string()> progress) { input_progress_ = std::move(progress); }
  // Makes the logged input survive a power loss (before Kafka is told it was read).
  Status SyncInputLog() { return log_->Sync(); }

  // Logs, then applies, a watermark advance that no event brought.
  Status AdvanceWatermark(int64_t watermark_ms);
  // Logs that pattern `id` is matched as `live` from here on (null: no more), before the
  // caller applies it (PatternRegistry's record hook).
  Status LogPatternChange(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live);

  // Takes a checkpoint now and waits until it counts.
  Result<state::CheckpointMeta> Checkpoint();
  // Counts the checkpoint being written once it is on disk (without waiting for it), and its
  // output committed (KeepAfterCommit).
  void CollectCheckpoint();
  // Starts one if it is due; while matching is behind, only once it is three intervals late.
  void CheckpointIfDue(bool matching_behind = false);
  // In the last part of the interval (kWriteAheadLeadMs, at most half of it), has the workers
  // write the changed keys ahead of the next checkpoint, so its barrier, which holds the input
  // back, finds few left (engine::ShardedMatcher::WriteAhead).
  void WriteAheadIfDue(bool matching_behind = false);
  static constexpr int64_t kWriteAheadLeadMs = 1000;

  const std::vector<state::CheckpointMeta>& checkpoints() const { return store_->checkpoints(); }
  const Stats& stats() const { return stats_; }
  uint64_t state_disk_bytes() const { return store_->disk_bytes(); }
  uint64_t input_log_bytes() const { return log_->bytes_on_disk(); }
  uint64_t last_position() const { return last_position_; }

 private:
  // Loads checkpoint `meta` into the matcher (left with part of it on error).
  Status Restore(const state::CheckpointMeta& meta);
  // Compiles a pattern as stored in a checkpoint or the input log.
  Result<std::shared_ptr<const nfa::Nfa>> Compile(const state::SavedPattern& saved);
  // Replays a logged pattern change into the matcher.
  Status ReplayPatternChange(std::string_view change);
  // Starts a checkpoint: the barrier now, the writing to disk (most of the time) on a thread
  // of its own while matching goes on; CollectCheckpoint counts it. Errors: the barrier's;
  // kUnavailable while the previous one is being written or waits for its commit.
  Status StartCheckpoint();
  // Whether checkpoint.interval has passed since the last and input came in since (and none
  // is being written or waits for its commit).
  bool CheckpointDue() const;
  // A checkpoint is being written, or waits for its commit.
  bool CheckpointUnderWay() const { return writing_.valid() || written_.has_value(); }
  // Waits for the checkpoint being written and counts it (KeepWritten).
  Result<state::CheckpointMeta> FinishCheckpoint();
  // Counts the checkpoint written, unless it waits for the commit of its output (then
  // kUnavailable, and it stays written_).
  Result<state::CheckpointMeta> KeepWritten();
  // A checkpoint that failed after the barrier: the next writes every key.
  Status CheckpointFailed(Status status);

  Options options_;
  engine::ShardedMatcher* matcher_;
  nfa::FieldSchema* schema_;
  AlertLog* alerts_;
  state::SpillStore* spill_;
  std::unique_ptr<state::CheckpointStore> store_;
  std::unique_ptr<state::InputLog> log_;
  uint64_t last_position_ = 0;
  int64_t last_checkpoint_steady_ms_ = 0;
  bool write_everything_ = false;  // the last checkpoint failed
  bool keep_after_commit_ = false;
  uint64_t committed_output_ = 0;  // with keep_after_commit_: see OutputCommitted
  // Written, waiting for the commit of its output (KeepAfterCommit).
  std::optional<state::CheckpointMeta> written_;
  ReplayHooks replay_hooks_;
  std::function<Status()> before_checkpoint_;
  std::function<std::string()> input_progress_;
  Stats stats_;
  std::future<Result<state::CheckpointMeta>> writing_;  // last: waited for before the store goes
};

}  // namespace vigil::server
