#include "interpose/device_api.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common/log.h"

namespace lshmoe::interpose {

const LshmoeShimDeviceApi* device_api() {
  static const LshmoeShimDeviceApi* api = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    // Beside this library, whatever directory it was preloaded from.
    Dl_info self{};
    std::string path = "liblshmoe_preload_cuda.so";
    if (dladdr(reinterpret_cast<void*>(&device_api), &self) != 0 && self.dli_fname != nullptr) {
      const std::string me = self.dli_fname;
      const size_t slash = me.rfind('/');
      if (slash != std::string::npos) path = me.substr(0, slash + 1) + path;
    }
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      LSHMOE_INFO("shim: no device back end (%s): device buffers pass through", dlerror());
      return;
    }
    using Entry = const LshmoeShimDeviceApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(library, "lshmoe_shim_device_api"));
    const LshmoeShimDeviceApi* found = entry != nullptr ? entry() : nullptr;
    if (found == nullptr || found->version != kShimDeviceApiVersion) {
      LSHMOE_WARN("shim: %s is not a device back end of this version: device buffers pass through",
                  path.c_str());
      return;
    }
    api = found;
    LSHMOE_INFO("shim: device back end %s", path.c_str());
  });
  return api;
}

}  // namespace lshmoe::interpose
