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
  const void* entries[] = {
      reinterpret_cast<const void*>(api->codec_create),
      reinterpret_cast<const void*>(api->codec_destroy),
      reinterpret_cast<const void*>(api->context_create),
      reinterpret_cast<const void*>(api->context_destroy),
      reinterpret_cast<const void*>(api->dispatch_encode),
      reinterpret_cast<const void*>(api->dispatch_decode),
      reinterpret_cast<const void*>(api->combine_encode),
      reinterpret_cast<const void*>(api->combine_decode),
      reinterpret_cast<const void*>(api->pool_create),
      reinterpret_cast<const void*>(api->pool_destroy),
      reinterpret_cast<const void*>(api->buffer),
      reinterpret_cast<const void*>(api->copy),
      reinterpret_cast<const void*>(api->capturing),
      reinterpret_cast<const void*>(api->check),
      reinterpret_cast<const void*>(api->poll),
      reinterpret_cast<const void*>(api->last_error),
  };
  static_assert(sizeof(entries) == sizeof(LshmoeShimDeviceApi) - sizeof(void*),
                "every entry of the table is checked");
  for (const void* entry_point : entries) {
    if (entry_point == nullptr) {
      fprintf(stderr, "device_backend_check: an entry of the table is missing\n");
      return 1;
    }
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
