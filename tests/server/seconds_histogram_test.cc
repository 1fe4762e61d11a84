// A histogram's Prometheus text: cumulative buckets, a value on a bound counted in that
// bound's bucket, and +Inf, sum and count.
#include "server/seconds_histogram.h"

#include <doctest/doctest.h>

TEST_SUITE_BEGIN("server");

TEST_CASE("SecondsHistogram: cumulative buckets, bounds inclusive, then sum and count") {
  constexpr double kBounds[] = {0.01, 0.1, 1};
  vigil::server::SecondsHistogram histogram(kBounds);
  for (const double seconds : {0.005, 0.01, 0.05, 0.1, 2.5}) histogram.Observe(seconds);
  std::string out;
  histogram.AppendPrometheus(&out, "vigil_test_seconds", "What a test observed.");
  CHECK(out ==
        "# HELP vigil_test_seconds What a test observed.\n"
        "# TYPE vigil_test_seconds histogram\n"
        "vigil_test_seconds_bucket{le=\"0.01\"} 2\n"
        "vigil_test_seconds_bucket{le=\"0.1\"} 4\n"
        "vigil_test_seconds_bucket{le=\"1\"} 4\n"
        "vigil_test_seconds_bucket{le=\"+Inf\"} 5\n"
        "vigil_test_seconds_sum 2.665\n"
        "vigil_test_seconds_count 5\n");
}

TEST_SUITE_END();
