// The plugin as NCCL sees it: opened by NCCL 2.28's name rules, the v11 or
// v8 table looked up by symbol, and one interface over both for the tests.
#pragma once

#include <dlfcn.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "nccl_net_abi.h"

namespace lshmoe::test_support {

// NCCL_NET_PLUGIN=name: dlopen(name) as given, then libnccl-net-<name>.so
// unless the name has a '/' or already reads lib*.so.
inline void* open_net_plugin(const std::string& name) {
  if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  const bool lib_so =
      name.rfind("lib", 0) == 0 && name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0;
  if (name.find('/') != std::string::npos || lib_so) return nullptr;
  return dlopen(("libnccl-net-" + name + ".so").c_str(), RTLD_NOW | RTLD_LOCAL);
}

inline void test_logger(ncclDebugLogLevel level, unsigned long, const char*, int, const char* fmt,
                        ...) {
  if (level > NCCL_LOG_WARN && getenv("LSHMOE_TEST_VERBOSE") == nullptr) return;
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "[%d] NCCL %s ", int(getpid()), level == NCCL_LOG_WARN ? "WARN" : "INFO");
  vfprintf(stderr, fmt, args);
  fprintf(stderr, "\n");
  va_end(args);
}

// One interface over the v11 and v8 tables.
struct NetApi {
  int version = 0;
  const ncclNet_v11_t* v11 = nullptr;
  const ncclNet_v8_t* v8 = nullptr;
  void* ctx = nullptr;

  // Opens the plugin and picks the table; false when either is missing.
  bool open(const std::string& plugin, int want_version) {
    void* lib = open_net_plugin(plugin);
    if (lib == nullptr) return false;
    version = want_version;
    if (version == 11) v11 = static_cast<const ncclNet_v11_t*>(dlsym(lib, "ncclNetPlugin_v11"));
    if (version == 8) v8 = static_cast<const ncclNet_v8_t*>(dlsym(lib, "ncclNetPlugin_v8"));
    return v11 != nullptr || v8 != nullptr;
  }
  const char* name() const { return v11 ? v11->name : v8->name; }
  ncclResult_t init() {
    if (v11) {
      ncclNetCommConfig_v11_t config{NCCL_NET_TRAFFIC_CLASS_UNDEF};
      return v11->init(&ctx, 0x1234, &config, test_logger, nullptr);
    }
    return v8->init(test_logger);
  }
  ncclResult_t finalize() { return v11 ? v11->finalize(ctx) : ncclSuccess; }
  ncclResult_t devices(int* n) { return v11 ? v11->devices(n) : v8->devices(n); }
  ncclResult_t properties(int dev, ncclNetProperties_v11_t* p) {
    if (v11) return v11->getProperties(dev, p);
    ncclNetProperties_v8_t p8;
    const ncclResult_t r = v8->getProperties(dev, &p8);
    *p = ncclNetProperties_v11_t{};
    p->name = p8.name;
    p->pciPath = p8.pciPath;
    p->guid = p8.guid;
    p->ptrSupport = p8.ptrSupport;
    p->speed = p8.speed;
    p->maxComms = p8.maxComms;
    p->maxRecvs = p8.maxRecvs;
    p->netDeviceType = p8.netDeviceType;
    return r;
  }
  ncclResult_t listen(int dev, void* handle, void** comm) {
    return v11 ? v11->listen(ctx, dev, handle, comm) : v8->listen(dev, handle, comm);
  }
  ncclResult_t connect(int dev, void* handle, void** comm) {
    ncclNetDeviceHandle_v8_t* dev_handle = nullptr;
    return v11 ? v11->connect(ctx, dev, handle, comm, &dev_handle)
               : v8->connect(dev, handle, comm, &dev_handle);
  }
  ncclResult_t accept(void* listen_comm, void** comm) {
    ncclNetDeviceHandle_v8_t* dev_handle = nullptr;
    return v11 ? v11->accept(listen_comm, comm, &dev_handle)
               : v8->accept(listen_comm, comm, &dev_handle);
  }
  ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mh) {
    return v11 ? v11->regMr(comm, data, size, type, mh) : v8->regMr(comm, data, size, type, mh);
  }
  ncclResult_t dereg_mr(void* comm, void* mh) {
    return v11 ? v11->deregMr(comm, mh) : v8->deregMr(comm, mh);
  }
  ncclResult_t isend(void* comm, void* data, size_t size, int tag, void* mh, void** req) {
    return v11 ? v11->isend(comm, data, size, tag, mh, nullptr, req)
               : v8->isend(comm, data, int(size), tag, mh, req);
  }
  ncclResult_t irecv(void* comm, void* data, size_t size, int tag, void* mh, void** req) {
    if (v11) return v11->irecv(comm, 1, &data, &size, &tag, &mh, nullptr, req);
    int isize = int(size);
    return v8->irecv(comm, 1, &data, &isize, &tag, &mh, req);
  }
  ncclResult_t irecv_many(void* comm, int n, void** data, size_t* sizes, int* tags, void** mh,
                          void** req) {
    return v11->irecv(comm, n, data, sizes, tags, mh, nullptr, req);
  }
  ncclResult_t test(void* req, int* done, int* size) {
    return v11 ? v11->test(req, done, size) : v8->test(req, done, size);
  }
  ncclResult_t close_send(void* c) { return v11 ? v11->closeSend(c) : v8->closeSend(c); }
  ncclResult_t close_recv(void* c) { return v11 ? v11->closeRecv(c) : v8->closeRecv(c); }
  ncclResult_t close_listen(void* c) { return v11 ? v11->closeListen(c) : v8->closeListen(c); }
};

}  // namespace lshmoe::test_support
