// Prints the version, build options and every LSHMOE_* variable with its
// value (from the environment) and doc.
#include <cstdio>

#include "codec/cpu/kernels.h"
#include "common/config.h"
#include "lshmoe/lshmoe.h"

int main() {
  lshmoe::Config config;
  const lshmoe::Status status = lshmoe::config_from_env(config);
  printf("lshmoe %s\n", lshmoe_version());
  printf("cpu kernels: %s available\n", lshmoe::cpu::avx2_supported() ? "avx2, scalar" : "scalar");
  printf("\n%-22s %-16s %s\n", "variable", "value", "doc");
  for (const lshmoe::ConfigVar& v : lshmoe::config_vars()) {
    printf("%-22s %-16s %s (%s; default \"%s\")\n", v.name, v.get(config).c_str(), v.doc, v.type,
           v.default_value);
  }
  if (status != LSHMOE_SUCCESS) {
    fprintf(stderr, "lshmoe_info: %s\n", lshmoe_last_error());
    return 1;
  }
  return 0;
}
