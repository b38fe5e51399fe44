// The worker pool covers every index once and survives exceptions thrown by
// any part (the codec turns them into status codes).
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "common/thread_pool.h"

namespace lshmoe {
namespace {

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, ThreadPool::kMinParallelWork, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) ++hits[i];
      });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n;
    }
  }
}

TEST(ThreadPool, SmallWorkRunsOnTheCallingThread) {
  ThreadPool pool(3);
  std::atomic<int> calls{0};
  pool.parallel_for(100, ThreadPool::kMinParallelWork - 1, [&](size_t b, size_t e) {
    EXPECT_EQ(b, 0u);
    EXPECT_EQ(e, 100u);
    ++calls;
  });
  EXPECT_EQ(calls.load(), 1);
}

TEST(ThreadPool, RethrowsAfterEveryPartFinished) {
  ThreadPool pool(3);
  for (size_t throwing_part = 0; throwing_part < 3; ++throwing_part) {
    std::atomic<int> finished{0};
    EXPECT_THROW(pool.parallel_for(3, ThreadPool::kMinParallelWork,
                                   [&](size_t b, size_t) {
                                     if (b == throwing_part) throw std::runtime_error("part");
                                     ++finished;
                                   }),
                 std::runtime_error);
    EXPECT_EQ(finished.load(), 2);
  }
  // Still usable.
  std::atomic<int> sum{0};
  pool.parallel_for(3, ThreadPool::kMinParallelWork,
                    [&](size_t b, size_t e) { sum += int(e - b); });
  EXPECT_EQ(sum.load(), 3);
}

}  // namespace
}  // namespace lshmoe
