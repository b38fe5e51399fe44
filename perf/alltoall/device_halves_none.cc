// Builds without CUDA and NCCL: --backend nccl is refused, saying why.
#include "alltoall/halves.h"

namespace lshmoe::perf {

int make_device_halves(const PerfOptions&, lshmoe_comm_t*, int, int, std::unique_ptr<Half>*,
                       std::unique_ptr<Half>*, std::string*, std::string* why) {
  *why = "this build has no CUDA or no NCCL (--backend nccl needs both)";
  return 2;
}

}  // namespace lshmoe::perf
