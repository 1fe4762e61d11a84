// BoundedQueue's promises beyond a plain FIFO: Push waits while it is full, and AwaitItem
// waits for an item without taking it, or for its timeout.
#include "engine/bounded_queue.h"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

TEST_SUITE_BEGIN("engine");

using vigil::engine::BoundedQueue;
using namespace std::chrono_literals;

TEST_CASE("BoundedQueue: items come out in the order they went in") {
  BoundedQueue<int> queue(3);
  for (int i = 1; i <= 3; ++i) queue.Push(i);
  CHECK(queue.size() == 3);
  for (int i = 1; i <= 3; ++i) CHECK(queue.Pop() == i);
  CHECK(queue.size() == 0);
}

TEST_CASE("BoundedQueue: AwaitItem returns at its timeout when nothing comes, and leaves an item in place") {
  BoundedQueue<int> queue(2);
  queue.AwaitItem(1ms);  // must come back with the queue still empty
  CHECK(queue.size() == 0);
  queue.Push(7);
  queue.AwaitItem(1h);  // an item is there: at once
  CHECK(queue.size() == 1);
  CHECK(queue.Pop() == 7);
}

TEST_CASE("BoundedQueue: AwaitItem wakes when another thread pushes, and Push waits while it is full") {
  BoundedQueue<int> queue(1);
  std::thread producer([&] {
    queue.Push(1);
    queue.Push(2);  // waits until the first is taken
  });
  queue.AwaitItem(1h);  // woken by the first push, not by the timeout
  CHECK(queue.Pop() == 1);
  CHECK(queue.Pop() == 2);
  producer.join();
  CHECK(queue.size() == 0);
}

TEST_SUITE_END();
