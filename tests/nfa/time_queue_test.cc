// TimeQueue against a stable sort: items come out by time, equal times in the order pushed,
// only up to the time asked, however pushes and takes interleave.
#include "nfa/time_queue.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

TEST_SUITE_BEGIN("nfa");

TEST_CASE("TimeQueue: by time, equal times in push order, up to the time asked") {
  for (const int64_t spread : {int64_t{1}, int64_t{7}, int64_t{5000}, int64_t{1} << 40}) {
    CAPTURE(spread);
    std::mt19937_64 random(static_cast<uint64_t>(spread));
    vigil::nfa::TimeQueue<int> queue;
    std::vector<std::pair<int64_t, int>> held;  // what the queue should hold, in push order
    int64_t watermark = -spread;                // negative times too
    int next = 0;
    std::vector<int> taken;
    for (int step = 0; step < 20000; ++step) {
      if (random() % 3 != 0) {
        const int64_t time = watermark + static_cast<int64_t>(random() % static_cast<uint64_t>(spread + 1));
        queue.Push(time, next);
        held.emplace_back(time, next++);
        continue;
      }
      watermark += static_cast<int64_t>(random() % static_cast<uint64_t>(spread / 2 + 2));
      const size_t max = 1 + random() % 40;
      taken.clear();
      queue.TakeUpTo(watermark, max, &taken);
      std::stable_sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      std::vector<int> expected;
      while (expected.size() < max && expected.size() < held.size() && held[expected.size()].first <= watermark) {
        expected.push_back(held[expected.size()].second);
      }
      REQUIRE(taken == expected);
      held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(expected.size()));
      REQUIRE(queue.size() == held.size());
    }
    size_t visited = 0;
    queue.ForEach([&](int64_t time, int item) {
      ++visited;
      CHECK(std::find(held.begin(), held.end(), std::pair<int64_t, int>{time, item}) != held.end());
    });
    CHECK(visited == held.size());
  }
}

TEST_CASE("TimeQueue: the extremes of time") {
  vigil::nfa::TimeQueue<int> queue;
  std::vector<int> taken;
  queue.Push(INT64_MAX, 1);
  queue.Push(0, 2);
  queue.Push(INT64_MIN, 3);
  queue.Push(-1, 4);
  queue.TakeUpTo(INT64_MIN, 10, &taken);
  CHECK(taken == std::vector<int>{3});
  queue.TakeUpTo(INT64_MAX - 1, 10, &taken);
  CHECK(taken == std::vector<int>{3, 4, 2});
  queue.TakeUpTo(INT64_MAX, 10, &taken);
  CHECK(taken == std::vector<int>{3, 4, 2, 1});
  CHECK(queue.empty());
}

TEST_CASE("TimeQueue: an item earlier than one taken comes out with the next take") {
  vigil::nfa::TimeQueue<int> queue;
  std::vector<int> taken;
  queue.Push(10, 1);
  queue.Push(20, 2);
  queue.TakeUpTo(15, 10, &taken);
  CHECK(taken == std::vector<int>{1});
  queue.Push(5, 3);  // overdue
  taken.clear();
  queue.TakeUpTo(15, 10, &taken);
  CHECK(taken == std::vector<int>{3});
  taken.clear();
  queue.TakeUpTo(20, 10, &taken);
  CHECK(taken == std::vector<int>{2});
  CHECK(queue.empty());
}

TEST_SUITE_END();
