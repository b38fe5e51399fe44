#include "interpose/real_nccl.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common/log.h"

namespace lshmoe::interpose {
namespace {

// `name` without its "nccl" prefix; NULL when the library has neither form.
template <typename Fn>
void find(void* library, const char* name, Fn* out) {
  void* fn = dlsym(library, (std::string("pnccl") + name).c_str());
  if (fn == nullptr) fn = dlsym(library, (std::string("nccl") + name).c_str());
  *out = reinterpret_cast<Fn>(fn);
}

bool resolve(RealNccl* r) {
  void* library = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) library = dlopen("libnccl.so", RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) library = RTLD_NEXT;
  if (transport::resolve_nccl_ops(library, &r->ops) != LSHMOE_SUCCESS) {
    LSHMOE_WARN("shim: %s", last_error());
    return false;
  }
  find(library, "CommInitRank", &r->comm_init_rank);
  find(library, "CommInitRankConfig", &r->comm_init_rank_config);
  find(library, "CommInitAll", &r->comm_init_all);
  find(library, "CommSplit", &r->comm_split);
  find(library, "CommDestroy", &r->comm_destroy);
  find(library, "CommAbort", &r->comm_abort);
  find(library, "CommFinalize", &r->comm_finalize);
  find(library, "AlltoAll", &r->all_to_all);
  find(library, "GroupSimulateEnd", &r->group_simulate_end);
  LSHMOE_INFO("shim: real NCCL found (%s)%s", library == RTLD_NEXT ? "next object" : "libnccl.so.2",
              r->all_to_all ? "" : ", without ncclAlltoAll");
  return true;
}

}  // namespace

const RealNccl* real_nccl() {
  static RealNccl real;
  static bool found = false;
  static std::once_flag once;
  std::call_once(once, [] { found = resolve(&real); });
  return found ? &real : nullptr;
}

}  // namespace lshmoe::interpose
