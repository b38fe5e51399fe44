// The shim's pairing rule: both ends of every message reach the same
// decision, and a dispatch's combine is the next equal-sized answer.
#include "interpose/pairing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace {

using lshmoe::interpose::PairTable;
using lshmoe::interpose::Role;

struct Ctx {
  int value = 0;
};
using Table = PairTable<Ctx>;

TEST(Pairing, AnAnswerOfTheSameRowsIsTheCombine) {
  Table t(2, 8);
  auto d = t.classify(1, true, 100);
  EXPECT_EQ(d.role, Role::kDispatch);
  EXPECT_EQ(d.pair_id, 0u);
  d.context->value = 7;
  auto in = t.classify(1, false, 60);  // the peer's own dispatch in the same call
  EXPECT_EQ(in.role, Role::kDispatch);
  t.end_call(true);
  // The combine: 60 rows back to the peer, 100 rows from it.
  auto back = t.classify(1, true, 60);
  EXPECT_EQ(back.role, Role::kCombine);
  auto got = t.classify(1, false, 100);
  ASSERT_EQ(got.role, Role::kCombine);
  EXPECT_EQ(got.context->value, 7);  // the dispatch's context
  EXPECT_EQ(got.pair_id, 0u);
  t.end_call(true);
  EXPECT_EQ(t.open_count(), 0u);
  EXPECT_EQ(t.counters().opened, 2u);
  EXPECT_EQ(t.counters().closed, 2u);
}

TEST(Pairing, ACallNeverClosesWhatItOpens) {
  Table t(2, 8);
  // Within one call, a send and a receive of equal rows both open.
  EXPECT_EQ(t.classify(1, true, 50).role, Role::kDispatch);
  EXPECT_EQ(t.classify(1, false, 50).role, Role::kDispatch);
  t.end_call(true);
  EXPECT_EQ(t.open_count(), 2u);
}

TEST(Pairing, TheMostRecentEqualDispatchIsClosedFirst) {
  Table t(2, 8);
  t.classify(1, false, 10).context->value = 1;
  t.end_call(true);
  t.classify(1, false, 10).context->value = 2;  // nested: a second layer
  t.end_call(true);
  auto c = t.classify(1, true, 10);
  ASSERT_EQ(c.role, Role::kCombine);
  EXPECT_EQ(c.context->value, 2);
  EXPECT_EQ(c.pair_id, 1u);
  // Two equal answers in one call close both.
  t.end_call(true);
  t.classify(1, false, 10).context->value = 3;
  t.end_call(true);
  EXPECT_EQ(t.classify(1, true, 10).context->value, 3);
  EXPECT_EQ(t.classify(1, true, 10).context->value, 1);
  EXPECT_EQ(t.classify(1, true, 10).role, Role::kDispatch);  // nothing left to close
  t.end_call(true);
}

TEST(Pairing, PastTheBoundTheOldestIsDropped) {
  Table t(2, 2);
  for (int i = 0; i < 3; ++i) {
    t.classify(1, true, 5).context->value = i;
    t.end_call(true);
  }
  EXPECT_EQ(t.counters().dropped, 1u);
  EXPECT_EQ(t.open_count(), 2u);
  EXPECT_EQ(t.classify(1, false, 5).context->value, 2);
  EXPECT_EQ(t.classify(1, false, 5).context->value, 1);
  EXPECT_EQ(t.classify(1, false, 5).role, Role::kDispatch);
}

TEST(Pairing, AFailedCallOpensNothing) {
  Table t(3, 8);
  t.classify(2, true, 5);
  t.end_call(false);
  EXPECT_EQ(t.open_count(), 0u);
  EXPECT_EQ(t.counters().dropped, 1u);
}

// Random calls between ranks, seen from every rank: the two ends of each
// message always decide alike (role and pair id), whatever the sizes.
TEST(Pairing, BothEndsAlwaysAgree) {
  constexpr int kRanks = 4;
  std::mt19937 rng(12345);
  std::vector<Table> tables;
  for (int r = 0; r < kRanks; ++r) tables.emplace_back(kRanks, 3);
  for (int call = 0; call < 2000; ++call) {
    // rows[a][b]: messages a -> b in this call (0 to 2 of them).
    std::vector<std::vector<std::vector<size_t>>> rows(kRanks,
                                                       std::vector<std::vector<size_t>>(kRanks));
    for (int a = 0; a < kRanks; ++a) {
      for (int b = 0; b < kRanks; ++b) {
        if (a == b) continue;
        const int count = int(rng() % 3);
        for (int m = 0; m < count; ++m) rows[a][b].push_back(size_t(1 + rng() % 3));
      }
    }
    // Each rank classifies its sends and receives, peer by peer, in posting
    // order; the order between peers and directions is the rank's own.
    std::vector<std::vector<std::vector<std::pair<Role, uint64_t>>>> sent(kRanks), received(kRanks);
    for (int r = 0; r < kRanks; ++r) {
      sent[r].resize(kRanks);
      received[r].resize(kRanks);
      std::vector<int> order(kRanks);
      for (int k = 0; k < kRanks; ++k) order[size_t(k)] = k;
      std::shuffle(order.begin(), order.end(), rng);
      for (int p : order) {
        if (p == r) continue;
        for (size_t n : rows[size_t(p)][size_t(r)]) {
          auto d = tables[size_t(r)].classify(p, false, n);
          received[r][p].push_back({d.role, d.pair_id});
        }
        for (size_t n : rows[size_t(r)][size_t(p)]) {
          auto d = tables[size_t(r)].classify(p, true, n);
          sent[r][p].push_back({d.role, d.pair_id});
        }
      }
    }
    for (auto& t : tables) t.end_call(true);
    for (int a = 0; a < kRanks; ++a) {
      for (int b = 0; b < kRanks; ++b) {
        ASSERT_EQ(sent[a][b], received[b][a]) << "call " << call << ", " << a << " -> " << b;
      }
    }
  }
  uint64_t closed = 0;
  for (auto& t : tables) closed += t.counters().closed;
  EXPECT_GT(closed, 1000u);  // the rule did pair, not only open
}

}  // namespace
