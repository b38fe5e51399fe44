// Writes the embedded default workload: clustered synthetic tokens (see
// eval/synthetic.h), the input of the README's main command.
//
//   lshmoe_make_dataset OUT.npy [rows] [row_elems] [bf16|fp16|fp32]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "eval/npy.h"
#include "eval/synthetic.h"

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {  // --help, or an option taken for the output
    fprintf(stderr, "usage: lshmoe_make_dataset OUT.npy [rows] [row_elems] [bf16|fp16|fp32]\n");
    return argc < 2 ? 2 : (strcmp(argv[1], "--help") == 0 ? 0 : 2);
  }
  lshmoe::eval::SyntheticSpec spec;
  if (argc > 2) spec.rows = strtoull(argv[2], nullptr, 10);
  if (argc > 3) spec.row_elems = strtoull(argv[3], nullptr, 10);
  lshmoe::DType dtype = lshmoe::DType::kBFloat16;
  if (argc > 4) {
    if (strcmp(argv[4], "fp32") == 0) {
      dtype = lshmoe::DType::kFloat32;
    } else if (strcmp(argv[4], "fp16") == 0) {
      dtype = lshmoe::DType::kFloat16;
    } else if (strcmp(argv[4], "bf16") != 0) {
      fprintf(stderr, "lshmoe_make_dataset: dtype must be bf16, fp16 or fp32\n");
      return 2;
    }
  }
  if (spec.rows == 0 || spec.row_elems == 0) {
    fprintf(stderr, "lshmoe_make_dataset: rows and row_elems must be positive\n");
    return 2;
  }
  const auto x = lshmoe::eval::clustered_tokens(spec);
  const auto array = lshmoe::eval::from_float(x, {spec.rows, spec.row_elems}, dtype);
  if (lshmoe::eval::write_npy(argv[1], array) != LSHMOE_SUCCESS) {
    fprintf(stderr, "lshmoe_make_dataset: %s\n", lshmoe_last_error());
    return 1;
  }
  return 0;
}
