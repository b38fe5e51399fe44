// Prints the version, build options, the CPU kernels found, and every
// LSHMOE_* variable with its value (from the environment) and doc.
//
//   lshmoe_info              human-readable
//   lshmoe_info --markdown   the variable table of README.md
#include <cstdio>
#include <cstring>
#include <string>

#include "codec/cpu/kernels.h"
#include "common/config.h"
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
  const lshmoe::Status status = lshmoe::config_from_env(config);
  printf("lshmoe %s\n", lshmoe_version());
#if defined(LSHMOE_BUILT_WITH_CUDA)
  printf("build: CUDA sources compiled\n");
#else
  printf("build: CPU only\n");
#endif
  printf("cpu kernels: %s\n", lshmoe::cpu::avx2_supported() ? "avx2, scalar" : "scalar");
  printf("\n%-22s %-16s %s\n", "variable", "value", "doc");
  for (const lshmoe::ConfigVar& v : lshmoe::config_vars()) {
    printf("%-22s %-16s %s (%s; default %s)\n", v.name, v.get(config).c_str(), v.doc, v.type,
           default_text(v).c_str());
  }
  if (status != LSHMOE_SUCCESS) {
    fprintf(stderr, "lshmoe_info: %s\n", lshmoe_last_error());
    return 1;
  }
  return 0;
}
