// Which spare handle a device dispatch reuses. A handle's device memory is
// sized by the largest dispatch it has served, and grows no further during a
// graph capture, so a dispatch takes the smallest spare that already holds
// it (one run of each shape before capturing then sizes a handle for it),
// else the largest (the least growth).
#pragma once

#include <cstddef>
#include <vector>

namespace lshmoe::exchange {

struct HandleCapacity {
  size_t origin_rows = 0, origin_bytes = 0, expert_rows = 0;

  bool holds(const HandleCapacity& need) const {
    return origin_rows >= need.origin_rows && origin_bytes >= need.origin_bytes &&
           expert_rows >= need.expert_rows;
  }
  void grow_to(const HandleCapacity& need) {
    origin_rows = origin_rows > need.origin_rows ? origin_rows : need.origin_rows;
    origin_bytes = origin_bytes > need.origin_bytes ? origin_bytes : need.origin_bytes;
    expert_rows = expert_rows > need.expert_rows ? expert_rows : need.expert_rows;
  }
};

// Index of the spare to reuse, or spares.size() when there is none.
inline size_t pick_spare(const std::vector<HandleCapacity>& spares, const HandleCapacity& need) {
  size_t pick = spares.size();
  for (size_t i = 0; i < spares.size(); ++i) {
    if (pick == spares.size()) {
      pick = i;
      continue;
    }
    const HandleCapacity &h = spares[i], &best = spares[pick];
    const bool better = h.holds(need) ? !best.holds(need) || h.origin_bytes < best.origin_bytes
                                      : !best.holds(need) && h.origin_bytes > best.origin_bytes;
    if (better) pick = i;
  }
  return pick;
}

}  // namespace lshmoe::exchange
