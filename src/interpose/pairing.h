// The pairing rule of the shim (docs/design.md "The LD_PRELOAD shim"): per
// communicator and ordered pair of ranks, a message A->B of n rows closes the
// most recent open dispatch B->A of n rows (it is that dispatch's combine);
// otherwise it opens a dispatch A->B. Each call is classified against the
// state before it: what a call opens is visible from the next call on, what
// it closes is gone at once (two equal messages in one call close two
// dispatches). Both ends of every message apply the same rule to the same
// calls, so they agree without talking.
//
// What can go wrong is the rule itself, not the agreement: a non-MoE
// all-to-all of whole rows on a selected communicator is paired as if it were
// one (select the expert-parallel communicators with LSHMOE_COMMS).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace lshmoe::interpose {

// The last two: a kept pair's steps on the backward thread (kept_pairs.h).
enum class Role : uint8_t { kDispatch, kCombine, kFirstStep, kSecondStep };

struct PairCounters {
  uint64_t opened = 0, closed = 0, dropped = 0;
};

// Context: what one end keeps of an open dispatch (the origin's residuals,
// the expert's assignment), owned by the table.
template <typename Context>
class PairTable {
 public:
  struct Decision {
    Role role;
    uint64_t pair_id;  // the dispatch's number within its ordered pair; its combine's too
    Context* context;  // a dispatch's (fresh, to fill) or the combined dispatch's
  };

  PairTable(int world_size, size_t max_open)
      : sent_(size_t(world_size)),
        received_(size_t(world_size)),
        next_sent_(size_t(world_size)),
        next_received_(size_t(world_size)),
        max_open_(max_open) {}

  // One message between this rank and `peer` of `rows` rows; `outgoing`: this
  // rank sends it. Call between begin_call and end_call, in posting order.
  Decision classify(int peer, bool outgoing, size_t rows) {
    std::deque<Open>& answers = outgoing ? received_[size_t(peer)] : sent_[size_t(peer)];
    for (auto it = answers.rbegin(); it != answers.rend(); ++it) {
      if (it->rows != rows) continue;
      // An incoming combine answers a dispatch this rank sent.
      closing_.push_back({peer, !outgoing, std::move(*it)});
      answers.erase(std::next(it).base());
      ++counters_.closed;
      return {Role::kCombine, closing_.back().open.pair_id, closing_.back().open.context.get()};
    }
    uint64_t& next = outgoing ? next_sent_[size_t(peer)] : next_received_[size_t(peer)];
    opening_.push_back({peer, outgoing, Open{rows, next++, std::make_unique<Context>()}});
    ++counters_.opened;
    return {Role::kDispatch, opening_.back().open.pair_id, opening_.back().open.context.get()};
  }

  // The call's dispatches become open (the oldest of a pair dropped past
  // max_open) and its combined dispatches are forgotten. `completed` false:
  // the call failed, what it opened is dropped.
  void end_call(bool completed) {
    end_call(completed, [](int, bool, size_t, uint64_t, std::unique_ptr<Context>) {});
  }
  // The same, a completed call's combined dispatches handed to
  // keep(peer, origin, rows, pair_id, context) (`origin`: this rank sent
  // the dispatch) instead of forgotten.
  template <typename Keep>
  void end_call(bool completed, Keep&& keep) {
    if (completed) {
      for (Closing& c : closing_) {
        keep(c.peer, c.origin, c.open.rows, c.open.pair_id, std::move(c.open.context));
      }
    }
    for (Opening& o : opening_) {
      if (!completed) {
        ++counters_.dropped;
        continue;
      }
      std::deque<Open>& list = o.outgoing ? sent_[size_t(o.peer)] : received_[size_t(o.peer)];
      list.push_back(std::move(o.open));
      if (list.size() > max_open_) {
        list.pop_front();
        ++counters_.dropped;
      }
    }
    opening_.clear();
    closing_.clear();
  }

  size_t open_count() const {
    size_t n = 0;
    for (const auto& l : sent_) n += l.size();
    for (const auto& l : received_) n += l.size();
    return n;
  }
  const PairCounters& counters() const { return counters_; }

 private:
  struct Open {
    size_t rows;
    uint64_t pair_id;
    std::unique_ptr<Context> context;
  };
  struct Opening {
    int peer;
    bool outgoing;
    Open open;
  };
  // Per peer: dispatches this rank sent that await their combine, and
  // dispatches it received, oldest first.
  std::vector<std::deque<Open>> sent_, received_;
  std::vector<uint64_t> next_sent_, next_received_;
  std::vector<Opening> opening_;  // this call's
  struct Closing {
    int peer;
    bool origin;
    Open open;
  };
  std::vector<Closing> closing_;  // this call's combines: alive until the call ends
  size_t max_open_;
  PairCounters counters_;
};

}  // namespace lshmoe::interpose
