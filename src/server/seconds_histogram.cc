#include "server/seconds_histogram.h"

#include <algorithm>

#include "common/json_text.h"

namespace vigil::server {

void SecondsHistogram::Observe(double seconds) {
  // Prometheus's buckets are inclusive: a value equal to a bound counts in that bound's bucket.
  ++counts_[std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin()];
  sum_ += seconds;
  ++count_;
}

void SecondsHistogram::AppendPrometheus(std::string* out, std::string_view name, std::string_view help) const {
  const std::string n(name);
  *out += "# HELP " + n + " " + std::string(help) + "\n# TYPE " + n + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t b = 0; b < counts_.size(); ++b) {
    cumulative += counts_[b];
    std::string le = "+Inf";
    if (b < bounds_.size()) {
      le.clear();
      AppendJsonNumber(&le, bounds_[b]);
    }
    *out += n + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  *out += n + "_sum ";
  AppendJsonNumber(out, sum_);
  *out += "\n" + n + "_count " + std::to_string(count_) + "\n";
}

}  // namespace vigil::server
