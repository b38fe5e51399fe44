// The shim's device back end loads as the shim loads it (dlopen beside the
// shim, one entry point) and answers its table: without a GPU, no codec and
// a message that says why; pools and contexts either way.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "interpose/device_api.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s liblshmoe_preload_cuda.so\n", argv[0]);
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    fprintf(stderr, "device_backend_check: %s\n", dlerror());
    return 1;
  }
  using Entry = const LshmoeShimDeviceApi* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(library, "lshmoe_shim_device_api"));
  const LshmoeShimDeviceApi* api = entry != nullptr ? entry() : nullptr;
  if (api == nullptr || api->version != lshmoe::interpose::kShimDeviceApiVersion) {
    fprintf(stderr, "device_backend_check: no table of version %u\n",
            lshmoe::interpose::kShimDeviceApiVersion);
    return 1;
  }
  void* pool = api->pool_create();
  void* context = api->context_create();
  if (pool == nullptr || context == nullptr) {
    fprintf(stderr, "device_backend_check: no pool or context\n");
    return 1;
  }
  api->context_destroy(context);
  api->pool_destroy(pool);
  void* codec = api->codec_create();
  if (codec == nullptr) {
    if (strlen(api->last_error()) == 0) {
      fprintf(stderr, "device_backend_check: no codec and no reason\n");
      return 1;
    }
    printf("device_backend_check: no codec here: %s\n", api->last_error());
    return 0;
  }
  api->codec_destroy(codec);
  printf("device_backend_check: a CUDA codec\n");
  return 0;
}
