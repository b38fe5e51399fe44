#include "common/thread_pool.h"

namespace lshmoe {

ThreadPool::ThreadPool(int threads) {
  try {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (...) {
    stop_workers();
    throw;
  }
}

ThreadPool::~ThreadPool() {
  stop_workers();
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::run_part(RangeFn fn, void* arg, size_t begin, size_t end) {
  try {
    fn(arg, begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run(size_t n, RangeFn fn, void* arg) {
  if (n == 0) return;
  const int parts = static_cast<int>(n < static_cast<size_t>(size()) ? n : size());
  if (parts == 1) {
    fn(arg, 0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    arg_ = arg;
    n_ = n;
    parts_ = parts;
    pending_ = parts - 1;
    error_ = nullptr;
    ++generation_;
  }
  start_cv_.notify_all();
  run_part(fn, arg, 0, n / parts);
  std::exception_ptr error;
  {
    // Workers use `fn` and `arg` until they are done: wait even on error.
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop(int index) {
  unsigned long seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (index >= parts_) continue;
    const size_t begin = n_ * index / parts_;
    const size_t end = n_ * (index + 1) / parts_;
    RangeFn fn = fn_;
    void* arg = arg_;
    lock.unlock();
    run_part(fn, arg, begin, end);
    lock.lock();
    if (--pending_ == 0) done_cv_.notify_one();
  }
}

}  // namespace lshmoe
