// A fixed set of worker threads for data-parallel loops over large messages.
// The calling thread takes part, so a pool of size 1 runs inline.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace lshmoe {

class ThreadPool {
 public:
  // Below this much work (elements, multiply-adds: the caller's unit) a loop
  // runs on the calling thread: waking workers would cost more.
  static constexpr size_t kMinParallelWork = size_t(1) << 16;

  // Starts threads - 1 workers; throws std::system_error (after stopping the
  // ones it started) when the system refuses a thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into size() contiguous ranges (fewer when n is small) and
  // runs fn(begin, end) on each, returning when all are done; inline when
  // `work` < kMinParallelWork. An exception thrown by any range is rethrown
  // here once every range has finished.
  template <typename Fn>
  void parallel_for(size_t n, size_t work, Fn&& fn) {
    if (work < kMinParallelWork || size() == 1) {
      if (n > 0) fn(size_t(0), n);
      return;
    }
    using F = std::remove_reference_t<Fn>;
    auto call = [](void* f, size_t b, size_t e) { (*static_cast<F*>(f))(b, e); };
    run(n, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using RangeFn = void (*)(void*, size_t, size_t);
  void run(size_t n, RangeFn fn, void* arg);
  void run_part(RangeFn fn, void* arg, size_t begin, size_t end);
  void worker_loop(int index);
  void stop_workers();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  RangeFn fn_ = nullptr;
  void* arg_ = nullptr;
  size_t n_ = 0;
  int parts_ = 0;
  unsigned long generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;  // the first exception of the current run
};

}  // namespace lshmoe
