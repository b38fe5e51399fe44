// The device communicator's choice of a spare handle (src/exchange/handle_pool.h).
#include "exchange/handle_pool.h"

#include <gtest/gtest.h>

namespace lshmoe::exchange {
namespace {

HandleCapacity cap(size_t origin_rows, size_t expert_rows, size_t row_bytes = 8192) {
  return HandleCapacity{origin_rows, origin_rows * row_bytes, expert_rows};
}

TEST(HandlePool, NoSpareMeansANewHandle) {
  EXPECT_EQ(pick_spare({}, cap(10, 10)), 0u);
}

TEST(HandlePool, TakesTheSmallestSpareThatHoldsTheDispatch) {
  // Freed in the order large, small, medium.
  const std::vector<HandleCapacity> spares = {cap(3000, 3000), cap(700, 700), cap(1500, 1500)};
  EXPECT_EQ(pick_spare(spares, cap(3000, 3000)), 0u);
  EXPECT_EQ(pick_spare(spares, cap(1000, 1000)), 2u);
  EXPECT_EQ(pick_spare(spares, cap(700, 700)), 1u);
  EXPECT_EQ(pick_spare(spares, cap(0, 0)), 1u);
}

TEST(HandlePool, EveryDimensionMustFit) {
  // The second holds more origin rows but too few expert rows.
  const std::vector<HandleCapacity> spares = {cap(4000, 4000), cap(1000, 10)};
  EXPECT_EQ(pick_spare(spares, cap(500, 500)), 0u);
  // Wider rows: the same row count no longer fits in the bytes.
  const std::vector<HandleCapacity> narrow = {cap(1000, 1000, 1024), cap(1000, 1000, 8192)};
  EXPECT_EQ(pick_spare(narrow, cap(1000, 1000, 4096)), 1u);
}

TEST(HandlePool, WhenNoneFitsTakesTheLargest) {
  const std::vector<HandleCapacity> spares = {cap(100, 100), cap(900, 900), cap(300, 300)};
  EXPECT_EQ(pick_spare(spares, cap(5000, 5000)), 1u);
}

TEST(HandlePool, CapacityGrowsToTheLargestServed) {
  HandleCapacity c = cap(100, 900);
  c.grow_to(cap(500, 200));
  EXPECT_EQ(c.origin_rows, 500u);
  EXPECT_EQ(c.expert_rows, 900u);
  EXPECT_EQ(c.origin_bytes, 500u * 8192);
  EXPECT_TRUE(c.holds(cap(500, 900)));
  EXPECT_FALSE(c.holds(cap(501, 900)));
}

}  // namespace
}  // namespace lshmoe::exchange
