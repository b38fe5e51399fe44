// The exact backward's rule over kept pairs: both ends of a backward
// message choose the same pair, last kept first, a replay keeps the pair
// for its backward, and a step that fails forgets it.
#include "interpose/kept_pairs.h"

#include <gtest/gtest.h>

#include <memory>

#include "interpose/pairing.h"

namespace {

using lshmoe::interpose::KeptPairs;
using lshmoe::interpose::PairTable;
using lshmoe::interpose::Role;

struct Ctx {
  int layer = -1;
};
using Kept = KeptPairs<Ctx>;

std::unique_ptr<Ctx> layer(int l) {
  auto c = std::make_unique<Ctx>();
  c->layer = l;
  return c;
}

// Rank 0's view with peer 1: layers 0 and 1, 64 rows each way, both ranks
// the origin of one pair and the expert of the other.
Kept two_layers() {
  Kept k(2, 8);
  for (int l = 0; l < 2; ++l) {
    k.keep(1, true, 64, 1, uint64_t(l), layer(l));
    k.keep(1, false, 64, 1, uint64_t(l), layer(10 + l));
  }
  return k;
}

TEST(KeptPairs, BackwardRunsTheLayersLastFirst) {
  Kept k = two_layers();
  for (int l = 1; l >= 0; --l) {
    // The combine's gradient: out as origin of layer l, in as its expert.
    auto out = k.classify(1, true, 64, 1);
    auto in = k.classify(1, false, 64, 1);
    ASSERT_NE(out.pair, nullptr);
    ASSERT_NE(in.pair, nullptr);
    EXPECT_EQ(out.step, Role::kFirstStep);
    EXPECT_EQ(in.step, Role::kFirstStep);
    EXPECT_EQ(out.pair->context->layer, l);
    EXPECT_EQ(in.pair->context->layer, 10 + l);
    Kept::first_was(out.pair, false);
    Kept::first_was(in.pair, false);
    k.end_call(true);
    // The dispatch's gradient: the same messages are second steps now.
    auto out2 = k.classify(1, true, 64, 1);
    auto in2 = k.classify(1, false, 64, 1);
    EXPECT_EQ(out2.step, Role::kSecondStep);
    EXPECT_EQ(in2.step, Role::kSecondStep);
    EXPECT_EQ(out2.pair->context->layer, 10 + l);  // back from this rank's experts
    EXPECT_EQ(in2.pair->context->layer, l);
    k.end_call(true);
  }
  EXPECT_EQ(k.kept_count(), 0u);
  EXPECT_EQ(k.counters().differentiated, 4u);
  // Nothing left: a further message is no kept pair's.
  EXPECT_EQ(k.classify(1, true, 64, 1).pair, nullptr);
}

TEST(KeptPairs, AReplayKeepsThePairForItsBackward) {
  Kept k = two_layers();
  auto out = k.classify(1, true, 64, 1);
  ASSERT_EQ(out.pair->context->layer, 1);
  Kept::first_was(out.pair, true);  // the recomputed forward's dispatch
  k.end_call(true);
  auto back = k.classify(1, false, 64, 1);  // its combine
  EXPECT_EQ(back.step, Role::kSecondStep);
  EXPECT_EQ(back.pair->context->layer, 1);
  k.end_call(true);
  EXPECT_EQ(k.counters().replayed, 1u);
  // Then the layer's backward proper.
  auto grad = k.classify(1, true, 64, 1);
  EXPECT_EQ(grad.step, Role::kFirstStep);
  EXPECT_EQ(grad.pair->context->layer, 1);
}

TEST(KeptPairs, OtherRowsOrTypesMatchNothing) {
  Kept k = two_layers();
  EXPECT_EQ(k.classify(1, true, 63, 1).pair, nullptr);
  EXPECT_EQ(k.classify(1, true, 64, 2).pair, nullptr);
  EXPECT_EQ(k.classify(0, true, 64, 1).pair, nullptr);  // another peer's
  // Two equal messages in one call take two pairs.
  auto a = k.classify(1, true, 64, 1);
  auto b = k.classify(1, true, 64, 1);
  ASSERT_NE(b.pair, nullptr);
  EXPECT_NE(a.pair, b.pair);
}

TEST(KeptPairs, AFailedStepForgetsThePair) {
  Kept k = two_layers();
  auto out = k.classify(1, true, 64, 1);
  ASSERT_NE(out.pair, nullptr);
  k.end_call(true);  // its first step was never told (a decode failed)
  EXPECT_EQ(k.kept_count(), 3u);
  k.classify(1, true, 64, 1);
  k.end_call(false);  // the call failed
  EXPECT_EQ(k.kept_count(), 2u);
  EXPECT_EQ(k.counters().dropped, 2u);
}

TEST(KeptPairs, TheOldestGoesPastTheBound) {
  Kept k(2, 2);
  for (int l = 0; l < 3; ++l) k.keep(1, true, 64, 1, uint64_t(l), layer(l));
  EXPECT_EQ(k.kept_count(), 2u);
  EXPECT_EQ(k.counters().dropped, 1u);
}

TEST(KeptPairs, TheForwardTableHandsOverItsCombinedPairs) {
  PairTable<Ctx> t(2, 8);
  Kept k(2, 8);
  auto keep = [&](int peer, bool origin, size_t rows, uint64_t id, std::unique_ptr<Ctx> c) {
    k.keep(peer, origin, rows, 1, id, std::move(c));
  };
  t.classify(1, true, 64).context->layer = 5;   // a dispatch to the peer
  t.classify(1, false, 32).context->layer = 6;  // and the peer's to this rank
  t.end_call(true, keep);
  EXPECT_EQ(k.kept_count(), 0u);  // open dispatches are not kept
  t.classify(1, true, 32);        // the combine back to the peer: this rank its expert
  t.classify(1, false, 64);       // the combine from it: this rank the origin
  t.end_call(true, keep);
  auto first = k.classify(1, true, 64, 1);  // the origin's first step
  ASSERT_NE(first.pair, nullptr);
  EXPECT_EQ(first.pair->context->layer, 5);
  auto in = k.classify(1, false, 32, 1);  // the peer's first step, to this expert
  ASSERT_NE(in.pair, nullptr);
  EXPECT_EQ(in.pair->context->layer, 6);
}

}  // namespace
