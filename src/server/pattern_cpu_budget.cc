#include "server/pattern_cpu_budget.h"

#include <cstdio>

namespace vigil::server {

PatternCpuBudget::PatternCpuBudget(uint64_t max_ns_per_event, engine::ShardedMatcher* matcher,
                                   PatternRegistry* registry, AuditLog* audit)
    : max_ns_per_event_(max_ns_per_event), matcher_(matcher), registry_(registry), audit_(audit) {}

void PatternCpuBudget::Check(int64_t now_steady_ms) {
  if (max_ns_per_event_ == 0) return;
  for (const nfa::Matcher::PatternCost& cost : matcher_->PatternCosts()) {
    const nfa::Pattern& pattern = cost.nfa->pattern();
    // Only the version matched now: one just replaced or disabled may still be listed.
    const StoredPattern* stored = registry_->Get(pattern.id);
    if (!stored || !stored->enabled || stored->version != pattern.version) continue;
    uint64_t ns_per_event = 0;
    if (OverBudget(cost, now_steady_ms, &ns_per_event)) Disable(pattern.id, pattern.version, ns_per_event);
  }
  std::erase_if(windows_, [this](const auto& entry) {
    const StoredPattern* stored = registry_->Get(entry.first);
    return !stored || !stored->enabled;
  });
}

bool PatternCpuBudget::OverBudget(const nfa::Matcher::PatternCost& cost, int64_t now_ms, uint64_t* ns_per_event) {
  Window& window = windows_[cost.nfa->pattern().id];
  // A new version, or the same one added again (its counts start over): a new first window.
  if (window.nfa != cost.nfa.get() || window.version != cost.nfa->pattern().version || cost.events < window.events ||
      cost.samples < window.samples || cost.sampled_ns < window.sampled_ns) {
    window = {cost.nfa.get(), cost.nfa->pattern().version, cost.events, cost.samples, cost.sampled_ns, now_ms, 0};
    return false;
  }
  const uint64_t samples = cost.samples - window.samples;
  if (now_ms - window.began_ms < kWindowMs || cost.events - window.events < kMinEvents || samples == 0) return false;
  *ns_per_event = (cost.sampled_ns - window.sampled_ns) / samples;
  window.strikes = *ns_per_event > max_ns_per_event_ ? window.strikes + 1 : 0;
  window.events = cost.events;
  window.samples = cost.samples;
  window.sampled_ns = cost.sampled_ns;
  window.began_ms = now_ms;
  return window.strikes >= kStrikes;
}

void PatternCpuBudget::Disable(const std::string& id, uint64_t version, uint64_t ns_per_event) {
  const std::string reason = "matching took " + std::to_string(ns_per_event / 1000) + " us per event for " +
                             std::to_string(kStrikes) + " windows in a row, over the budget of " +
                             std::to_string(max_ns_per_event_ / 1000) +
                             " us (events.max_pattern_cpu_us_per_event)";
  const Status s = registry_->SetEnabled(id, false, reason);
  windows_.erase(id);  // judged afresh: after a failure, tried again two windows on
  if (!s.ok()) {
    std::fprintf(stderr, "vigil: pattern '%s' is over its CPU budget but could not be disabled: %s\n", id.c_str(),
                 s.message().c_str());
    return;
  }
  audit_->Record({"vigil", "", "disable", id, static_cast<int64_t>(version), 200, reason});
  ++disabled_;
  std::fprintf(stderr, "vigil: pattern '%s' version %llu disabled: %s\n", id.c_str(),
               static_cast<unsigned long long>(version), reason.c_str());
}

}  // namespace vigil::server
