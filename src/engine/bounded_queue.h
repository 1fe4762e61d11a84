#pragma once
// BoundedQueue: a fixed-capacity FIFO between threads. Push waits while it is full (that
// wait is the back-pressure from a slow consumer) and Pop waits while it is empty.
//
// A mutex and two condition variables: the queue carries blocks of hundreds of events, so its
// cost is per block, not per event. A side is woken only when the other is waiting, so a busy
// stream makes no system calls.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

namespace vigil::engine {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : ring_(capacity) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  void Push(T item) {
    std::unique_lock lock(mutex_);
    if (size_ == ring_.size()) {
      ++pushers_waiting_;
      not_full_.wait(lock, [this] { return size_ < ring_.size(); });
      --pushers_waiting_;
    }
    ring_[(head_ + size_) % ring_.size()] = std::move(item);
    ++size_;
    if (poppers_waiting_ > 0) not_empty_.notify_one();
  }

  T Pop() {
    std::unique_lock lock(mutex_);
    if (size_ == 0) {
      ++poppers_waiting_;
      not_empty_.wait(lock, [this] { return size_ > 0; });
      --poppers_waiting_;
    }
    T item = std::move(ring_[head_]);
    head_ = (head_ + 1) % ring_.size();
    --size_;
    if (pushers_waiting_ > 0) not_full_.notify_one();
    return item;
  }

  // Returns once an item is there (left in place: the queue has one reader, which pops it) or
  // `timeout` has passed.
  void AwaitItem(std::chrono::nanoseconds timeout) {
    std::unique_lock lock(mutex_);
    if (size_ > 0) return;
    ++poppers_waiting_;
    not_empty_.wait_for(lock, timeout, [this] { return size_ > 0; });
    --poppers_waiting_;
  }

  size_t size() const {
    std::lock_guard lock(mutex_);
    return size_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::vector<T> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
  int pushers_waiting_ = 0;
  int poppers_waiting_ = 0;
};

}  // namespace vigil::engine
