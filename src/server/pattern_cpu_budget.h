#pragma once
// PatternCpuBudget: a pattern whose matching costs more CPU per event than the budget is
// disabled, with the reason shown on the pattern, logged and audited, so that one costly or
// hostile pattern cannot take the matching threads from the others. Enabling it again, or
// uploading a new version, judges it afresh.
//
// The cost is the engine's (ShardedMatcher::PatternCosts): the time the workers spent stepping
// the pattern's partial matches for the events they timed, over those events. It is judged over windows of
// at least kWindowMs and kMinEvents events; a pattern is disabled after kStrikes windows over
// the budget in a row, as one slow window may be the machine's doing (another process, a
// preempted thread), not the pattern's. Disabling is a pattern change like any other: it is
// logged for replay and takes effect behind the events already in flight (the server's thread
// waits for them). With Kafka's rules topic, the change reaches every instance; the reason
// is kept by the instance that measured it.
// Not thread-safe: used on the server's thread.

#include <cstdint>
#include <map>
#include <string>

#include "engine/sharded_matcher.h"
#include "server/audit_log.h"
#include "server/pattern_registry.h"

namespace vigil::server {

class PatternCpuBudget {
 public:
  static constexpr int64_t kWindowMs = 1000;
  // Enough events (some 300 timed) that a sample stretched by preemption weighs little.
  static constexpr uint64_t kMinEvents = 5000;
  static constexpr int kStrikes = 2;

  // `max_ns_per_event` 0: no budget (costs are still reported).
  PatternCpuBudget(uint64_t max_ns_per_event, engine::ShardedMatcher* matcher, PatternRegistry* registry,
                   AuditLog* audit);

  // Reads the costs and disables the patterns over the budget; call every few hundred ms.
  void Check(int64_t now_steady_ms);

  // Patterns disabled for their cost.
  uint64_t disabled() const { return disabled_; }

 private:
  struct Window {
    const nfa::Nfa* nfa = nullptr;  // the version judged (with its number: an address may be reused)
    uint64_t version = 0;
    uint64_t events = 0;            // its counts when the window began
    uint64_t samples = 0;
    uint64_t sampled_ns = 0;
    int64_t began_ms = 0;
    int strikes = 0;
  };
  // Whether `cost`, of the pattern's current version, ends a window over the budget.
  bool OverBudget(const nfa::Matcher::PatternCost& cost, int64_t now_ms, uint64_t* ns_per_event);
  void Disable(const std::string& id, uint64_t version, uint64_t ns_per_event);

  uint64_t max_ns_per_event_;
  engine::ShardedMatcher* matcher_;
  PatternRegistry* registry_;
  AuditLog* audit_;
  std::map<std::string, Window> windows_;  // by pattern id
  uint64_t disabled_ = 0;
};

}  // namespace vigil::server
