#pragma once
// SecondsHistogram: durations counted into fixed buckets, written as a Prometheus histogram
// (cumulative `_bucket` lines with `le`, then `_sum` and `_count`). Not thread-safe: its
// owner guards it.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vigil::server {

class SecondsHistogram {
 public:
  // `upper_bounds`: each bucket's largest value, in seconds, increasing; +Inf follows.
  explicit SecondsHistogram(std::span<const double> upper_bounds)
      : bounds_(upper_bounds.begin(), upper_bounds.end()), counts_(bounds_.size() + 1) {}

  void Observe(double seconds);

  // Appends `name`'s HELP and TYPE lines and its samples.
  void AppendPrometheus(std::string* out, std::string_view name, std::string_view help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // by bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace vigil::server
