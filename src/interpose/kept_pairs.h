// The pairing rule of the shim's exact backward (LSHMOE_BACKWARD=exact,
// docs/shim.md "Exact backward"): pairs are kept after their combine, per
// communicator and ordered pair of ranks, and the backward thread's
// messages are matched against them.
//
// A backward-thread message S->R of n rows is, in this order:
// - the second step of the most recent kept pair with dispatch R->S of n
//   rows whose first step has travelled (its dispatch gradient, or the
//   combine of a replayed forward);
// - else the first step of the most recent kept pair with dispatch S->R of
//   n rows awaiting one (its combine gradient, or the dispatch of a replayed
//   forward: the sender tells which, in the message);
// - else not a kept pair's (it passes through).
// As in the forward rule, a call is classified against the state before it,
// and both ends apply the rule to the same messages. After a first step the
// pair awaits its second; after a replay's second step it is kept as before,
// after a backward's it is forgotten. LIFO per ordered pair: right when each
// backward follows its own forward (not under pipeline schedules with
// several microbatches in flight).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "interpose/pairing.h"

namespace lshmoe::interpose {

struct KeptCounters {
  uint64_t kept = 0, differentiated = 0, replayed = 0, dropped = 0;
};

template <typename Context>
class KeptPairs {
 public:
  enum class Stage : uint8_t { kKept, kReplaying, kDifferentiating };

  struct Pair {
    size_t rows;
    int dtype;  // the pair's element type: a backward message of another matches nothing
    uint64_t pair_id;
    std::unique_ptr<Context> context;
    Stage stage = Stage::kKept;
    // This call's: the pair is taken, and what its first step turned out to be.
    bool taken = false, first_known = false, replay = false;
  };

  struct Decision {
    Pair* pair;  // NULL: no kept pair's
    Role step;   // kFirstStep or kSecondStep
  };

  KeptPairs(int world_size, size_t max_kept)
      : as_origin_(size_t(world_size)), as_expert_(size_t(world_size)), max_kept_(max_kept) {}

  // A pair whose combine completed; `origin`: this rank sent its dispatch.
  void keep(int peer, bool origin, size_t rows, int dtype, uint64_t pair_id,
            std::unique_ptr<Context> context) {
    std::deque<Pair>& list = (origin ? as_origin_ : as_expert_)[size_t(peer)];
    list.push_back(Pair{rows, dtype, pair_id, std::move(context)});
    ++counters_.kept;
    if (list.size() > max_kept_) {
      list.pop_front();
      ++counters_.dropped;
    }
  }

  // One backward-thread message between this rank and `peer`; `outgoing`:
  // this rank sends it.
  Decision classify(int peer, bool outgoing, size_t rows, int dtype) {
    // Second steps go expert -> origin: this rank is the expert when it sends.
    if (Pair* p = find(outgoing ? as_expert_ : as_origin_, peer, rows, dtype, false)) {
      p->taken = true;
      return {p, Role::kSecondStep};
    }
    if (Pair* p = find(outgoing ? as_origin_ : as_expert_, peer, rows, dtype, true)) {
      p->taken = true;
      return {p, Role::kFirstStep};
    }
    return {nullptr, Role::kFirstStep};
  }

  // What a first step was, once its end knows (the sender when it encodes,
  // the receiver when it decodes).
  static void first_was(Pair* p, bool replay) {
    p->first_known = true;
    p->replay = replay;
  }

  // The call's steps take effect. A pair whose step failed (`completed`
  // false, or a first step never told) is forgotten.
  void end_call(bool completed) {
    for (auto* lists : {&as_origin_, &as_expert_}) {
      for (std::deque<Pair>& list : *lists) {
        for (auto it = list.begin(); it != list.end();) {
          if (!it->taken) {
            ++it;
            continue;
          }
          it->taken = false;
          const bool awaiting_first = it->stage == Stage::kKept;
          if (!completed || (awaiting_first && !it->first_known)) {
            ++counters_.dropped;
            it = list.erase(it);
            continue;
          }
          if (awaiting_first) {
            it->stage = it->replay ? Stage::kReplaying : Stage::kDifferentiating;
            it->first_known = false;
            ++it;
          } else if (it->stage == Stage::kReplaying) {
            it->stage = Stage::kKept;
            ++counters_.replayed;
            ++it;
          } else {
            ++counters_.differentiated;
            it = list.erase(it);
          }
        }
      }
    }
  }

  size_t kept_count() const {
    size_t n = 0;
    for (const auto& l : as_origin_) n += l.size();
    for (const auto& l : as_expert_) n += l.size();
    return n;
  }
  const KeptCounters& counters() const { return counters_; }

 private:
  // The most recent pair of `rows` and `dtype` with `peer` not taken in this
  // call, awaiting its first step or (`first` false) its second.
  static Pair* find(std::vector<std::deque<Pair>>& lists, int peer, size_t rows, int dtype,
                    bool first) {
    std::deque<Pair>& list = lists[size_t(peer)];
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      if (it->taken || it->rows != rows || it->dtype != dtype) continue;
      if ((it->stage == Stage::kKept) == first) return &*it;
    }
    return nullptr;
  }

  // Per peer, oldest first: pairs whose dispatch this rank sent, and those
  // it received.
  std::vector<std::deque<Pair>> as_origin_, as_expert_;
  size_t max_kept_;
  KeptCounters counters_;
};

}  // namespace lshmoe::interpose
