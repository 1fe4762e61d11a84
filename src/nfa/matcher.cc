#include "nfa/matcher.h"

#include <algorithm>
#include <chrono>

#include "common/byte_codec.h"
#include "common/cache_lines.h"
#include "common/time_util.h"
#include "nfa/event_key.h"

namespace vigil::nfa {
namespace {

// Held-back events are released this many at a time, their state prefetched together.
constexpr size_t kReleaseGroup = 32;
// PrefetchKeys loads the last nodes of this many runs of a key at most.
constexpr size_t kPrefetchedRuns = 4;

// Marks the Matcher as matching for a scope (see Matcher::CheckNotMatching).
class MatchingScope {
 public:
  explicit MatchingScope(bool* flag) : flag_(flag) { *flag_ = true; }
  ~MatchingScope() { *flag_ = false; }
  MatchingScope(const MatchingScope&) = delete;
  MatchingScope& operator=(const MatchingScope&) = delete;

 private:
  bool* flag_;
};

}  // namespace

Matcher::Matcher(std::vector<std::shared_ptr<const Nfa>> patterns, MatcherOptions options,
                 MatchSink* sink)
    : options_(options), sink_(sink) {
  slots_.resize(patterns.size());
  for (size_t i = 0; i < patterns.size(); ++i) slots_[i].nfa = std::move(patterns[i]);
  GroupKeys();
}

void Matcher::GroupKeys() {
  key_slots_.clear();
  for (PatternSlot& slot : slots_) {
    const int key_slot = slot.nfa->pattern().key_slot;
    auto it = std::find(key_slots_.begin(), key_slots_.end(), key_slot);
    slot.key_group = static_cast<size_t>(it - key_slots_.begin());
    if (it == key_slots_.end()) key_slots_.push_back(key_slot);
  }
}

Matcher::~Matcher() {
  for (PatternSlot& slot : slots_) {
    for (KeyRecord& r : slot.records) runtime_.Clear(&r.state);
  }
}

size_t Matcher::active_keys() const {
  size_t n = 0;
  for (const PatternSlot& slot : slots_) n += slot.index.size();
  return n;
}

void Matcher::Add(const Event* event) {
  const MatchingScope scope(&matching_);
  Accept(event);
  FireTimers(watermark_ms_);
  KeepWithinBudget();
}

void Matcher::Accept(const Event* event) {
  ++stats_.events;
  if (event->time_ms() < watermark_ms_) {
    ++stats_.late_events;
    sink_->OnLate(*event, watermark_ms_);
    return;
  }
  max_time_ms_ = std::max(max_time_ms_, event->time_ms());
  const int64_t watermark = WatermarkAfter(max_time_ms_, given_watermark_);

  if (event->time_ms() <= watermark) {
    // Held back, it would be released at once, after what was held back up to its time (which
    // came before it) and before the rest: it is matched in that place, uncopied.
    ReleaseWaiting(event->time_ms());
    CurrentEvent current(event, next_seq_++);
    Dispatch(&current, given_hashes_, epoch_);
  } else {
    waiting_.Push(event->time_ms(), {event->Retain(), next_arrival_++, epoch_});
  }
  ReleaseWaiting(watermark);
  watermark_ms_ = watermark;
}

int64_t Matcher::WatermarkAfter(int64_t max_time_ms, int64_t given_watermark_ms) const {
  return std::max({watermark_ms_, given_watermark_ms, SaturatingSub(max_time_ms, options_.max_out_of_orderness_ms)});
}

void Matcher::ReleaseWaiting(int64_t watermark_ms) {
  if (waiting_.empty()) return;
  // In groups, each group's state loads issued before its events are matched (as AddBatch).
  do {
    released_.clear();
    waiting_.TakeUpTo(watermark_ms, kReleaseGroup, &released_);
    released_events_.clear();
    for (const Waiting& ready : released_) released_events_.push_back(ready.event.get());
    PrefetchKeys(released_events_, KeyHashes{});
    for (Waiting& ready : released_) {
      CurrentEvent current(ready.event.get(), next_seq_++);
      current.Adopt(ready.event);
      Dispatch(&current, nullptr, ready.epoch);
    }
  } while (released_.size() == kReleaseGroup);
  released_.clear();
}

void Matcher::AdvanceWatermark(int64_t watermark_ms) {
  if (watermark_ms <= watermark_ms_) return;
  const MatchingScope scope(&matching_);
  watermark_ms_ = watermark_ms;
  ReleaseWaiting(watermark_ms);
  FireTimers(watermark_ms);
  KeepWithinBudget();
}

bool Matcher::PrefetchKeys(std::span<const Event* const> events, const KeyHashes& hashes, int64_t held_back_after) {
  // Three passes, each issuing the loads the next one needs: the events and their keys' index
  // slots, the records those name, then each record's runs. Prefetches are hints: matching
  // looks every key up again, so keys that appear or disappear within the batch stay correct.
  // batch_hashes_ is indexed by slot position: valid only while the patterns cannot change
  // (CheckNotMatching).
  for (const Event* event : events) event->Prefetch();
  const size_t patterns = slots_.size();
  const size_t groups = key_slots_.size();
  // Hashes computed upstream are used only if they are of this Matcher's key fields.
  const bool given = hashes.key_slots != nullptr && *hashes.key_slots == key_slots_ &&
                     hashes.by_event_and_group.size() == events.size() * groups;
  batch_hashes_.resize(events.size() * patterns);
  group_hashes_.resize(groups);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i]->time_ms() > held_back_after) {
      // Held back until the watermark passes it, when its state is loaded (ReleaseWaiting).
      std::fill_n(batch_hashes_.begin() + static_cast<ptrdiff_t>(i * patterns), patterns, 0);
      continue;
    }
    // Patterns keyed by the same field share one hash.
    for (size_t g = 0; g < groups; ++g) {
      if (given) {
        group_hashes_[g] = hashes.by_event_and_group[i * groups + g];
      } else {
        group_hashes_[g] = EncodeKey(KeyOfSlot(key_slots_[g], *events[i]), &key_buffer_)
                               ? HashKey(key_buffer_)
                               : 0;
      }
    }
    for (size_t p = 0; p < patterns; ++p) {
      const std::optional<EventFilter>& filter = slots_[p].nfa->event_filter();
      const uint64_t hash = group_hashes_[slots_[p].key_group];
      const bool wanted = Owns(hash) && (!filter || filter->Passes(*events[i]));
      // 0 (as for a key that cannot be one): nothing is loaded for it below.
      batch_hashes_[i * patterns + p] = wanted ? hash : 0;
      if (wanted) slots_[p].index.Prefetch(hash);
    }
  }
  batch_records_.resize(batch_hashes_.size());
  for (size_t i = 0; i < batch_hashes_.size(); ++i) {
    const PatternSlot& slot = slots_[i % patterns];
    batch_records_[i] = batch_hashes_[i] == 0 ? KeyIndex::kNone : slot.index.Peek(batch_hashes_[i]);
    if (batch_records_[i] != KeyIndex::kNone) __builtin_prefetch(&slot.records[batch_records_[i]]);
  }
  for (size_t i = 0; i < batch_records_.size(); ++i) {
    if (batch_records_[i] == KeyIndex::kNone) continue;
    const KeyNfaState& state = slots_[i % patterns].records[batch_records_[i]].state;
    if (!state.partial.empty()) __builtin_prefetch(state.partial.data());
  }
  // Every run the event reaches reads its last node (to take the event after it, or to skip
  // it), and conditions that name an earlier stage read that node's event: two more levels,
  // loaded rather than prefetched (see common/cache_lines.h).
  auto each_run = [&](auto&& visit) {
    for (size_t i = 0; i < batch_records_.size(); ++i) {
      if (batch_records_[i] == KeyIndex::kNone) continue;
      const std::vector<ComputationState>& runs = slots_[i % patterns].records[batch_records_[i]].state.partial;
      for (size_t r = 0; r < std::min(runs.size(), kPrefetchedRuns); ++r) {
        if (runs[r].node) visit(*runs[r].node);
      }
    }
  };
  each_run([](const BufferNode& node) { LoadLine(&node); });
  each_run([](const BufferNode& node) {
    if (node.event) node.event->LoadBlock();
  });
  return given;
}

void Matcher::AddBatch(std::span<const Event* const> events, const KeyHashes& hashes,
                       std::span<const int64_t> watermarks) {
  const MatchingScope scope(&matching_);
  // An event above the watermark the batch ends with is held back, its state loaded only when
  // it is released (seconds later, with out-of-orderness allowed): loading it now is wasted.
  const bool watermarks_given = watermarks.size() == events.size();
  int64_t latest = max_time_ms_;
  for (const Event* event : events) latest = std::max(latest, event->time_ms());
  const int64_t end_watermark =
      WatermarkAfter(latest, watermarks_given && !watermarks.empty() ? std::ranges::max(watermarks) : INT64_MIN);
  const bool given = PrefetchKeys(events, hashes, end_watermark);
  const size_t groups = key_slots_.size();
  for (size_t i = 0; i < events.size(); ++i) {
    given_hashes_ = given ? &hashes.by_event_and_group[i * groups] : nullptr;
    if (watermarks_given) given_watermark_ = watermarks[i];
    Accept(events[i]);
  }
  given_hashes_ = nullptr;
  given_watermark_ = INT64_MIN;
  // Timers fire once for the whole batch. Firing them later than the watermark allowed is
  // safe: a key's own next event first advances that key to its event time (DispatchTo),
  // which closes the same windows, and the batch lets the due keys' state be prefetched.
  FireTimers(watermark_ms_);
  KeepWithinBudget();
}

void Matcher::Dispatch(CurrentEvent* current, const uint64_t* given_hashes, uint64_t epoch) {
  event_keys_.resize(key_slots_.size());
  for (size_t g = 0; g < key_slots_.size(); ++g) {
    EventKey& key = event_keys_[g];
    // With the hash known, a key of another shard costs nothing more.
    key.owned = !given_hashes || Owns(given_hashes[g]);
    if (!key.owned) continue;
    key.usable = EncodeKey(KeyOfSlot(key_slots_[g], current->event()), &key.identity);
    key.hash = !key.usable ? 0 : given_hashes ? given_hashes[g] : HashKey(key.identity);
  }
  for (PatternSlot& slot : slots_) DispatchTo(slot, current, epoch);
}

// Only the stepping is timed: what the pattern itself costs, not the sink's waits (a full
// alert queue, a lock) or reading a spilled key back. The events timed are drawn at random
// intervals averaging kCostSampleEvery, so no periodic input can hide its cost or inflate it.
void Matcher::Step(PatternSlot& slot, KeyNfaState* state, CurrentEvent* current) {
  ++slot.events;
  if (--slot.until_sample != 0) {
    runtime_.Process(*slot.nfa, state, current, &matches_);
    return;
  }
  sample_random_ ^= sample_random_ << 13;  // xorshift64
  sample_random_ ^= sample_random_ >> 7;
  sample_random_ ^= sample_random_ << 17;
  slot.until_sample = 1 + static_cast<uint32_t>(sample_random_ % (2 * kCostSampleEvery - 1));
  const auto started = std::chrono::steady_clock::now();
  runtime_.Process(*slot.nfa, state, current, &matches_);
  slot.sampled_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  ++slot.samples;
}

void Matcher::CollectCosts(std::vector<PatternCost>* out) const {
  out->resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const PatternSlot& slot = slots_[i];
    PatternCost& cost = (*out)[i];
    // Assigned only when it changed: a copy on every chunk would touch the shared count.
    if (cost.nfa != slot.nfa) cost.nfa = slot.nfa;
    cost.events = slot.events;
    cost.samples = slot.samples;
    cost.sampled_ns = slot.sampled_ns;
  }
}

void Matcher::DispatchTo(PatternSlot& slot, CurrentEvent* current, uint64_t epoch) {
  if (slot.since_epoch > epoch) return;  // the event was added before the pattern
  const Nfa& nfa = *slot.nfa;
  const Event& event = current->event();
  const Pattern& pattern = nfa.pattern();
  const EventKey& key = event_keys_[slot.key_group];
  if (!key.owned) return;
  if (!key.usable) {
    sink_->OnRejected(event, nfa, KeyProblem(pattern, KeyOf(pattern, event)));
    return;
  }
  const uint64_t hash = key.hash;
  if (!Owns(hash)) return;
  // An event no edge can take changes nothing: the key's runs need not even be looked up. Its
  // runs' windows still close, by their timers.
  if (nfa.event_filter() && !nfa.event_filter()->Passes(event)) return;
  const std::string& identity = key.identity;
  uint32_t found = slot.index.Find(hash, identity, [&slot](uint32_t r) {
    return std::string_view(slot.records[r].identity);
  });
  if (found != KeyIndex::kNone && slot.records[found].spilled && !ReadBack(slot, found)) {
    found = KeyIndex::kNone;  // lost: the key starts again
  }
  if (found == KeyIndex::kNone) {
    // Most events start nothing: try the start state on an empty scratch state and only keep
    // a record for the key if a run or held match results.
    Step(slot, &scratch_state_, current);
    Emit(slot, identity);
    if (scratch_state_.empty()) return;
    uint32_t index;
    if (!slot.free_records.empty()) {
      index = slot.free_records.back();
      slot.free_records.pop_back();
    } else {
      index = static_cast<uint32_t>(slot.records.size());
      slot.records.emplace_back();
    }
    KeyRecord& record = slot.records[index];
    record.identity = identity;
    record.hash = hash;
    record.state.partial.swap(scratch_state_.partial);
    record.state.completed.swap(scratch_state_.completed);
    record.timer_ms = INT64_MAX;
    record.live = true;
    record.recently_used = true;
    slot.index.Insert(hash, index);
    AfterStep(slot, index);
    return;
  }
  KeyRecord& record = slot.records[found];
  record.recently_used = true;
  AdvanceKey(slot, &record.state, event.time_ms());
  Step(slot, &record.state, current);
  Emit(slot, record.identity);
  AfterStep(slot, found);
}

// Bounds the key's runs, frees its record when nothing is left, and (re)arms its timer.
void Matcher::AfterStep(PatternSlot& slot, uint32_t record_index) {
  KeyRecord& record = slot.records[record_index];
  KeepNewestRuns(slot, record, options_.max_partial_matches_per_key);
  if (options_.max_partial_matches_per_pattern > 0 && slot.runs > options_.max_partial_matches_per_pattern) {
    EnforcePatternLimit(slot, record_index);
  }
  if (record.state.empty()) {
    FreeRecord(slot, record_index);
    return;
  }
  MarkChanged(slot, record_index);
  ArmTimer(slot, record_index);
}

void Matcher::CountRuns(PatternSlot& slot, KeyRecord& record) {
  const auto runs = static_cast<uint32_t>(record.state.partial.size() + record.state.completed.size());
  slot.runs = slot.runs + runs - record.runs;
  record.runs = runs;
}

void Matcher::MarkChanged(PatternSlot& slot, uint32_t record_index) {
  KeyRecord& record = slot.records[record_index];
  if (!options_.track_changes || record.changed) return;
  record.changed = true;
  slot.changed.emplace_back(record_index, record.generation);
}

void Matcher::KeepNewestRuns(PatternSlot& slot, KeyRecord& record, size_t max_runs) {
  stats_.dropped_partial_matches += runtime_.EnforceLimit(*slot.nfa, &record.state, max_runs, &matches_);
  Emit(slot, record.identity);  // matches held back for a dropped run
  CountRuns(slot, record);
}

void Matcher::EnforcePatternLimit(PatternSlot& slot, uint32_t record_index) {
  const uint64_t limit = options_.max_partial_matches_per_pattern;
  // The key that went over gives up its oldest runs first.
  KeyRecord& record = slot.records[record_index];
  const size_t own = std::min<uint64_t>(slot.runs - limit, record.state.partial.size());
  KeepNewestRuns(slot, record, record.state.partial.size() - own);
  // Then the others their oldest, one each in turn, so no single key pays for all.
  for (size_t visited = 0; slot.runs > limit && visited < slot.records.size(); ++visited) {
    if (slot.limit_hand >= slot.records.size()) slot.limit_hand = 0;
    const uint32_t i = slot.limit_hand++;
    KeyRecord& other = slot.records[i];
    if (i == record_index || !other.live || other.spilled || other.state.partial.empty()) continue;
    KeepNewestRuns(slot, other, other.state.partial.size() - 1);
    if (other.state.empty()) {
      FreeRecord(slot, i);
    } else {
      MarkChanged(slot, i);
    }
  }
}

void Matcher::FreeRecord(PatternSlot& slot, uint32_t record_index) {
  KeyRecord& record = slot.records[record_index];
  slot.runs -= record.runs;
  record.runs = 0;
  if (record.stored) slot.deleted.push_back(std::move(record.identity));
  record.stored = false;
  record.changed = false;
  slot.index.Erase(record.hash, record_index);
  record.live = false;
  ++record.generation;
  slot.free_records.push_back(record_index);
}

uint64_t Matcher::memory_bytes() const {
  uint64_t records = 0;
  for (const PatternSlot& slot : slots_) records += slot.records.capacity();
  return Event::RetainedBytesOnThisThread() + runtime_.buffer().live_nodes() * sizeof(BufferNode) +
         records * sizeof(KeyRecord);
}

bool Matcher::Spill(PatternSlot& slot, uint32_t record_index, bool write) {
  KeyRecord& record = slot.records[record_index];
  if (write) {
    key_buffer_.clear();
    EncodeKeyState(record.state, &key_buffer_);
    if (!options_.spill->Put(slot.nfa->pattern().id, record.identity, key_buffer_).ok()) return false;
  }
  runtime_.Clear(&record.state);
  record.state = KeyNfaState();  // its buffers too
  record.spilled = true;
  ++spilled_keys_;
  ++stats_.keys_spilled;
  return true;
}

bool Matcher::ReadBack(PatternSlot& slot, uint32_t record_index) {
  KeyRecord& record = slot.records[record_index];
  record.spilled = false;
  --spilled_keys_;
  Result<std::string> bytes = options_.spill->Get(slot.nfa->pattern().id, record.identity, true);
  const Status s = bytes.ok() ? DecodeKeyState(*bytes, *slot.nfa, options_.restore_events,
                                               &runtime_.mutable_buffer(), &record.state)
                              : bytes.status();
  if (!s.ok()) {
    ++stats_.keys_lost;
    FreeRecord(slot, record_index);
    return false;
  }
  ++stats_.keys_read_back;
  return true;
}

void Matcher::KeepWithinBudget() {
  const uint64_t budget = options_.memory_budget_bytes;
  // Below the floor a sweep could not go (key records stay when their state is spilled), only
  // growth past it is worth another sweep.
  if (budget == 0 || memory_bytes() <= std::max(budget, budget_floor_ + budget_floor_ / 8)) return;
  const uint64_t target = budget - budget / 10;
  size_t records = 0;
  for (const PatternSlot& slot : slots_) records += slot.records.size();
  // The clock: a key used since the hand last passed it is spared once (its bit cleared), so
  // two turns find every key not used in between.
  for (size_t step = 0; step < 2 * records + slots_.size() && memory_bytes() > target; ++step) {
    if (clock_slot_ >= slots_.size()) clock_slot_ = 0;
    PatternSlot& slot = slots_[clock_slot_];
    if (clock_record_ >= slot.records.size()) {
      clock_slot_ = (clock_slot_ + 1) % slots_.size();
      clock_record_ = 0;
      continue;
    }
    const uint32_t index = clock_record_++;
    KeyRecord& record = slot.records[index];
    if (!record.live || record.spilled) continue;
    if (record.recently_used) {
      record.recently_used = false;
      continue;
    }
    if (!Spill(slot, index, true)) return;  // the spill fails: keep what is in memory
  }
  const uint64_t now = memory_bytes();
  budget_floor_ = now > target ? now : 0;
}

void Matcher::AdvanceKey(const PatternSlot& slot, KeyNfaState* state, int64_t time_ms) {
  if (slot.nfa->has_window()) {
    runtime_.AdvanceTime(*slot.nfa, state, time_ms, &matches_);
  } else if (options_.max_state_age_ms > 0) {
    stats_.expired_partial_matches +=
        runtime_.ExpireRuns(*slot.nfa, state, SaturatingSub(time_ms, options_.max_state_age_ms), &matches_);
  }
}

void Matcher::ArmTimer(PatternSlot& slot, uint32_t record_index) {
  KeyRecord& record = slot.records[record_index];
  int64_t deadline = INT64_MAX;
  if (slot.nfa->has_window()) {
    deadline = runtime_.NextDeadline(*slot.nfa, record.state);
  } else if (options_.max_state_age_ms > 0 && !record.state.partial.empty()) {
    deadline = SaturatingAdd(record.state.partial.front().start_ms, options_.max_state_age_ms);
  }
  if (deadline < record.timer_ms) {
    record.timer_ms = deadline;
    slot.timers.Push(deadline, {deadline, record_index, record.generation});
  }
}

void Matcher::FireTimers(int64_t watermark_ms) {
  for (PatternSlot& slot : slots_) {
    due_.clear();
    slot.timers.TakeUpTo(watermark_ms, SIZE_MAX, &due_);
    // As in AddBatch: load the due keys' records, then their runs, before working on any.
    for (const Timer& t : due_) __builtin_prefetch(&slot.records[t.record]);
    for (const Timer& t : due_) {
      const KeyRecord& record = slot.records[t.record];
      if (!record.live) continue;
      if (!record.state.partial.empty()) __builtin_prefetch(record.state.partial.data());
      slot.index.Prefetch(record.hash);  // a key left with nothing is erased from the index
    }
    // A timer is armed at the earliest deadline of a key's runs, so its first run most often
    // ends, releasing its last node and that node's event: load those too, a level a pass.
    for (const Timer& t : due_) {
      const KeyRecord& record = slot.records[t.record];
      if (record.live && !record.state.partial.empty() && record.state.partial[0].node) {
        LoadLine(record.state.partial[0].node);
      }
    }
    for (const Timer& t : due_) {
      const KeyRecord& record = slot.records[t.record];
      if (!record.live || record.state.partial.empty()) continue;
      const BufferNode* node = record.state.partial[0].node;
      if (node && node->event) LoadLine(node->event.get());
    }
    for (const Timer& timer : due_) {
      KeyRecord& record = slot.records[timer.record];
      if (!record.live || record.generation != timer.generation ||
          record.timer_ms != timer.deadline_ms) {
        continue;  // stale: the key was freed or re-armed since
      }
      if (record.spilled && !ReadBack(slot, timer.record)) continue;
      record.timer_ms = INT64_MAX;
      AdvanceKey(slot, &record.state, watermark_ms);
      Emit(slot, record.identity);
      AfterStep(slot, timer.record);
    }
  }
}

void Matcher::Finish() {
  const MatchingScope scope(&matching_);
  ReleaseWaiting(INT64_MAX);
  watermark_ms_ = INT64_MAX;
  for (PatternSlot& slot : slots_) {
    for (uint32_t i = 0; i < slot.records.size(); ++i) {
      KeyRecord& record = slot.records[i];
      if (!record.live || (record.spilled && !ReadBack(slot, i))) continue;
      runtime_.Finish(*slot.nfa, &record.state, &matches_);
      Emit(slot, record.identity);
      runtime_.Clear(&record.state);
      record.live = false;
    }
    slot.index.Clear();
    slot.records.clear();
    slot.free_records.clear();
    slot.timers = {};
    slot.changed.clear();  // they named the records
    slot.changed_from = 0;
    slot.runs = 0;
  }
}

void Matcher::Emit(const PatternSlot& slot, std::string_view identity) {
  if (matches_.empty()) return;
  const std::string key_json = KeyJson(identity);
  for (const Match& m : matches_) {
    ++(m.timed_out ? stats_.timeouts : stats_.matches);
    sink_->OnMatch(*slot.nfa, key_json, m);
  }
  matches_.clear();
}

std::vector<Matcher::PatternSlot>::iterator Matcher::FindSlot(std::string_view id) {
  return std::find_if(slots_.begin(), slots_.end(),
                      [id](const PatternSlot& slot) { return slot.nfa->pattern().id == id; });
}

std::vector<Matcher::PatternSlot>::const_iterator Matcher::FindSlot(std::string_view id) const {
  return std::find_if(slots_.begin(), slots_.end(),
                      [id](const PatternSlot& slot) { return slot.nfa->pattern().id == id; });
}

Status Matcher::CheckNotMatching() const {
  // A sink callback runs while slots_ is being iterated and a key's record is being worked
  // on; changing the patterns there would pull both from under the caller.
  if (matching_) {
    return Status::FailedPrecondition("patterns cannot change from a match sink callback");
  }
  return Status::Ok();
}

size_t Matcher::DropState(PatternSlot& slot) {
  size_t dropped = 0;
  for (KeyRecord& record : slot.records) {
    if (!record.live) continue;  // a freed record holds nothing (AfterStep)
    dropped += record.runs;
    if (record.spilled) {
      --spilled_keys_;
      continue;
    }
    runtime_.Clear(&record.state);
  }
  // The timers go with the records they name; nothing else refers to this slot's records.
  slot.index.Clear();
  slot.records.clear();
  slot.free_records.clear();
  slot.timers = {};
  slot.changed.clear();
  slot.changed_from = 0;
  slot.deleted.clear();
  slot.runs = 0;
  if (options_.track_changes) dropped_patterns_.push_back(slot.nfa->pattern().id);
  return dropped;
}

Status Matcher::AddPattern(std::shared_ptr<const Nfa> nfa) {
  if (Status s = CheckNotMatching(); !s.ok()) return s;
  const std::string& id = nfa->pattern().id;
  if (FindSlot(id) != slots_.end()) {
    return Status::AlreadyExists("pattern '" + id + "' already exists");
  }
  PatternSlot& slot = slots_.emplace_back();
  slot.nfa = std::move(nfa);
  slot.since_epoch = ++epoch_;
  GroupKeys();
  return Status::Ok();
}

Result<size_t> Matcher::ReplacePattern(std::shared_ptr<const Nfa> nfa) {
  if (Status s = CheckNotMatching(); !s.ok()) return s;
  const std::string& id = nfa->pattern().id;
  const auto slot = FindSlot(id);
  if (slot == slots_.end()) return Status::NotFound("pattern '" + id + "' not found");
  // The runs are states of the old graph and mean nothing in the new one: drop them.
  const size_t dropped = DropState(*slot);
  slot->nfa = std::move(nfa);
  slot->since_epoch = ++epoch_;
  slot->events = slot->samples = slot->sampled_ns = 0;  // a new version's cost is its own
  GroupKeys();
  return dropped;
}

Result<size_t> Matcher::RemovePattern(std::string_view id) {
  if (Status s = CheckNotMatching(); !s.ok()) return s;
  const auto slot = FindSlot(id);
  if (slot == slots_.end()) return Status::NotFound("pattern '" + std::string(id) + "' not found");
  const size_t dropped = DropState(*slot);
  slots_.erase(slot);
  GroupKeys();
  return dropped;
}

std::vector<std::string> Matcher::pattern_ids() const {
  std::vector<std::string> ids;
  ids.reserve(slots_.size());
  for (const PatternSlot& slot : slots_) ids.push_back(slot.nfa->pattern().id);
  return ids;
}

std::shared_ptr<const Nfa> Matcher::pattern(std::string_view id) const {
  const auto slot = FindSlot(id);
  return slot == slots_.end() ? nullptr : slot->nfa;
}

size_t Matcher::partial_matches(std::string_view id) const {
  const auto slot = FindSlot(id);
  if (slot == slots_.end()) return 0;
  return slot->runs;
}

}  // namespace vigil::nfa

namespace vigil::nfa {

Status Matcher::WriteChanges(StateWriter* writer, bool everything) {
  if (everything) {
    writer->DropAll();
    for (PatternSlot& slot : slots_) {
      slot.deleted.clear();
      slot.changed.clear();
      slot.changed_from = 0;
      for (uint32_t i = 0; i < slot.records.size(); ++i) {
        KeyRecord& record = slot.records[i];
        if (!record.live) continue;
        record.changed = true;
        slot.changed.emplace_back(i, record.generation);
      }
    }
  }
  return WriteChangesAhead(writer, SIZE_MAX).status();
}

Result<size_t> Matcher::WriteChangesAhead(StateWriter* writer, size_t max_keys) {
  for (const std::string& id : dropped_patterns_) writer->DropPattern(id);
  dropped_patterns_.clear();
  // Listed keys that need no writing (gone, or written since) are skipped at a cache miss
  // each; after many keys have ended they are most of the list, so they are bounded too.
  size_t skips = max_keys > SIZE_MAX / kSkipsPerKeyAhead ? SIZE_MAX : max_keys * kSkipsPerKeyAhead;
  size_t left = 0;
  for (PatternSlot& slot : slots_) {
    const std::string& id = slot.nfa->pattern().id;
    // Deletions first: a key deleted and then started again is put after its deletion, so
    // none of the slot's keys is put while deletions are left.
    for (; !slot.deleted.empty() && max_keys > 0; --max_keys) {
      writer->DeleteKey(id, slot.deleted.back());
      slot.deleted.pop_back();
    }
    for (; slot.deleted.empty() && slot.changed_from < slot.changed.size() && max_keys > 0 && skips > 0;
         ++slot.changed_from) {
      const auto [index, generation] = slot.changed[slot.changed_from];
      KeyRecord& record = slot.records[index];
      if (!record.live || record.generation != generation || !record.changed) {
        --skips;
        continue;
      }
      if (record.spilled) {
        Result<std::string> spilled = options_.spill->Get(id, record.identity, false);
        if (!spilled.ok()) return spilled.status();  // the key stays listed
        encoded_ = std::move(*spilled);
      } else {
        encoded_.clear();
        EncodeKeyState(record.state, &encoded_);
      }
      writer->PutKey(id, record.identity, encoded_);
      record.changed = false;
      record.stored = true;
      --max_keys;
    }
    if (slot.changed_from == slot.changed.size()) {
      slot.changed.clear();
      slot.changed_from = 0;
    }
    left += slot.deleted.size() + slot.changed.size() - slot.changed_from;
  }
  return left;
}

namespace {

// Progress, format 1: u8 version, watermark, max event time, next seq, epoch; then the
// patterns (id, since_epoch); then the held-back events (arrival, epoch, line, text).
constexpr uint8_t kProgressFormat = 1;

}  // namespace

std::string Matcher::EncodeProgress() const {
  std::string out(1, static_cast<char>(kProgressFormat));
  PutSignedVarint(&out, watermark_ms_);
  PutSignedVarint(&out, max_time_ms_);
  PutVarint(&out, next_seq_);
  PutVarint(&out, epoch_);
  PutVarint(&out, slots_.size());
  for (const PatternSlot& slot : slots_) {
    PutBytes(&out, slot.nfa->pattern().id);
    PutVarint(&out, slot.since_epoch);
  }
  // The queue's order does not matter here: the restore sorts.
  PutVarint(&out, waiting_.size());
  waiting_.ForEach([&out](int64_t, const Waiting& w) {
    PutVarint(&out, w.arrival);
    PutVarint(&out, w.epoch);
    PutVarint(&out, w.event->line());
    PutBytes(&out, w.event->raw());
  });
  return out;
}

Status Matcher::RestoreProgress(std::span<const std::string> progress, const EventRestorer& restore) {
  struct Held {
    uint64_t line, arrival, epoch;
    std::string_view text;
  };
  std::vector<Held> held;
  for (const std::string& value : progress) {
    if (value.empty() || static_cast<uint8_t>(value[0]) != kProgressFormat) {
      return Status::Corruption("stored matcher progress has an unknown format");
    }
    ByteReader in(std::string_view(value).substr(1));
    watermark_ms_ = std::max(watermark_ms_, in.SignedVarint());
    max_time_ms_ = std::max(max_time_ms_, in.SignedVarint());
    next_seq_ = std::max(next_seq_, in.Varint());
    epoch_ = std::max(epoch_, in.Varint());
    const uint64_t patterns = in.Below(value.size());
    for (uint64_t i = 0; i < patterns && in.ok(); ++i) {
      const std::string_view id = in.Bytes();
      const uint64_t since_epoch = in.Varint();
      if (auto slot = FindSlot(id); slot != slots_.end()) slot->since_epoch = since_epoch;
    }
    const uint64_t count = in.Below(value.size());
    for (uint64_t i = 0; i < count && in.ok(); ++i) {
      Held h;
      h.arrival = in.Varint();
      h.epoch = in.Varint();
      h.line = in.Varint();
      h.text = in.Bytes();
      held.push_back(h);
    }
    if (!in.done()) return Status::Corruption("stored matcher progress is truncated or corrupt");
  }
  // Input order; an event that several shards held (patterns keyed differently) once.
  std::sort(held.begin(), held.end(), [](const Held& a, const Held& b) {
    return a.line != b.line ? a.line < b.line : a.arrival < b.arrival;
  });
  uint64_t last_line = 0;
  for (const Held& h : held) {
    if (h.line != 0 && h.line == last_line) continue;
    last_line = h.line;
    Result<EventRef> event = restore(h.text);
    if (!event.ok()) return event.status();
    (*event)->set_line(h.line);
    const int64_t time_ms = (*event)->time_ms();
    waiting_.Push(time_ms, {std::move(*event), next_arrival_++, h.epoch});
  }
  return Status::Ok();
}

Status Matcher::RestoreKey(std::string_view pattern_id, std::string_view identity,
                           std::string_view state, const EventRestorer& restore) {
  const auto slot = FindSlot(pattern_id);
  const uint64_t hash = HashKey(identity);
  if (slot == slots_.end() || !Owns(hash)) return Status::Ok();
  KeyNfaState decoded;
  if (Status s = DecodeKeyState(state, *slot->nfa, restore, &runtime_.mutable_buffer(), &decoded);
      !s.ok()) {
    return s;
  }
  if (decoded.empty()) return Status::Ok();
  const auto index = static_cast<uint32_t>(slot->records.size());
  KeyRecord& record = slot->records.emplace_back();
  record.identity = identity;
  record.hash = hash;
  record.state = std::move(decoded);
  record.live = true;
  record.stored = true;
  CountRuns(*slot, record);
  slot->index.Insert(hash, index);
  ArmTimer(*slot, index);
  // Beyond the budget a restored key stays where it is: in the checkpoint the spill reads.
  if (options_.memory_budget_bytes > 0 && memory_bytes() > options_.memory_budget_bytes) {
    Spill(*slot, index, false);
  }
  return Status::Ok();
}

}  // namespace vigil::nfa
