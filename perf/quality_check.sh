#!/usr/bin/env bash
# The CPU codec's dispatch error and wire ratio on the sets issue 14 keeps
# unchanged: the shared tiny-moe activations (both layers, fp32 and bf16),
# clustered synthetic rows (H = 4096 and 1024, bf16) and i.i.d. Gaussian
# rows (H = 4096 and 1024, bf16). Prints one markdown table row per set.
#   bash perf/quality_check.sh [BUILD_DIR]     (default: build)
# DATA (default ../shared/data/tiny-moe-v1) locates the tiny-moe set; sets
# missing there are skipped.
set -euo pipefail
build=${1:-build}
data=${DATA:-../shared/data/tiny-moe-v1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
eval_bin="$build/perf/lshmoe_eval"
row() {  # name, then lshmoe_eval arguments
  local name=$1
  shift
  "$eval_bin" "$@" --kmeans 0 | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("| %s | %.5f | %.5f |" % (sys.argv[1], r["rel_err_dispatch"], r["wire_ratio"]))' "$name"
}
echo "| rows | dispatch error | wire ratio |"
echo "|---|---|---|"
for layer in layer0 layer1; do
  d="$data/$layer"
  [[ -f $d/tokens.npy ]] || continue
  for cast in fp32 bf16; do
    row "tiny-moe $layer, $cast" "$d/tokens.npy" --splits-file "$d/splits.txt" --cast "$cast"
  done
done
for h in 4096 1024; do
  "$build/perf/lshmoe_make_dataset" "$work/clustered_$h.npy" 8192 "$h" bf16 >/dev/null
  row "synthetic clustered, H = $h" "$work/clustered_$h.npy" --peers 1
done
# i.i.d. Gaussian rows: nothing to find, the error of one slot mean per
# five rows.
for h in 4096 1024; do
  /usr/bin/python3 - "$work/gauss_$h.npy" "$h" <<'PY'
import sys
import numpy as np
import torch
x = torch.from_numpy(np.random.default_rng(7).standard_normal((8192, int(sys.argv[2])), dtype=np.float32))
np.save(sys.argv[1], x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
PY
  row "i.i.d. Gaussian, H = $h" "$work/gauss_$h.npy" --peers 1
done
