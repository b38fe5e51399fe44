// Prints the version, build options, the CPU kernels found, and every
// LSHMOE_* variable with its value (from the environment) and doc.
//
//   lshmoe_info              human-readable
//   lshmoe_info --markdown   the variable table of README.md
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "codec/cpu/kernels.h"
#include "common/config.h"
#include "common/topology.h"
#include "lshmoe/lshmoe.h"

namespace {

std::string default_text(const lshmoe::ConfigVar& v) {
  const std::string text = v.get(lshmoe::Config{});
  return text.empty() ? "(empty)" : text;
}

void print_markdown() {
  printf("| variable | allowed values | default | meaning |\n");
  printf("| --- | --- | --- | --- |\n");
  for (const lshmoe::ConfigVar& v : lshmoe::config_vars()) {
    printf("| `%s` | %s | `%s` | %s |\n", v.name, v.type, default_text(v).c_str(), v.doc);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
    print_markdown();
    return 0;
  }
  lshmoe::Config config;
  if (lshmoe::config_from_env(config) != LSHMOE_SUCCESS) {
    fprintf(stderr, "lshmoe_info: %s\n", lshmoe_last_error());
    return 1;
  }
  printf("lshmoe %s\n", lshmoe_version());
#if defined(LSHMOE_BUILT_WITH_CUDA)
  printf("build: CUDA sources compiled\n");
#else
  printf("build: CPU only\n");
#endif
  const lshmoe::cpu::Kernels* best = lshmoe::cpu::select_kernels("auto");
  printf("cpu kernels: %s (available:%s%s scalar)\n", best->isa,
         lshmoe::cpu::avx512bf16_supported() ? " avx512bf16" : "",
         lshmoe::cpu::avx2_supported() ? " avx2" : "");
  std::vector<lshmoe::Device> devices;
  if (lshmoe::discover_devices(&devices) == LSHMOE_SUCCESS) {
    printf("devices:\n");
    for (const lshmoe::Device& d : devices) {
      printf("  %-8s %-16s %s\n", d.kind == lshmoe::Device::Kind::kGpu ? "gpu" : "network",
             d.name.c_str(), d.pci_path.empty() ? "(virtual)" : d.pci_path.c_str());
    }
    if (devices.empty()) printf("  (none found)\n");
  } else {
    printf("devices: %s\n", lshmoe_last_error());
  }
  printf("\n%-22s %-16s %s\n", "variable", "value", "doc");
  for (const lshmoe::ConfigVar& v : lshmoe::config_vars()) {
    printf("%-22s %-16s %s (%s; default %s)\n", v.name, v.get(config).c_str(), v.doc, v.type,
           default_text(v).c_str());
  }
  return 0;
}
