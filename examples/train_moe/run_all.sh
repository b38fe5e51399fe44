#!/usr/bin/env bash
# The measured comparison (perf/RESULTS.md "Training through lshmoe"): the
# same model, data and seeds, uncompressed and through lshmoe, rho 0.2 and
# 0.1, alpha 1 and 0, each backward. Writes OUT/<run>/log.json, then
# OUT/loss_curves.png and OUT/summary.json.
#   examples/train_moe/run_all.sh [OUT] [extra train.py flags]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/runs}
shift || true
python=${LSHMOE_TORCH_PYTHON:-/usr/bin/python3}
run() {
  local name=$1
  shift
  [ -f "$out/$name/log.json" ] && return 0
  echo "== $name: $*"
  "$python" "$here/train.py" --out "$out/$name" "$@" "${extra[@]}"
}
extra=("$@")
for seed in 0 1; do
  run "raw_seed$seed" --compress off --seed "$seed"
  run "rho0.2_alpha1_exact_seed$seed" --rho 0.2 --alpha 1 --backward exact --seed "$seed"
done
run rho0.1_alpha1_exact_seed0 --rho 0.1 --alpha 1 --backward exact --seed 0
run rho0.2_alpha0_exact_seed0 --rho 0.2 --alpha 0 --backward exact --seed 0
run rho0.2_alpha1_raw_seed0 --rho 0.2 --alpha 1 --backward raw --seed 0
run rho0.2_alpha1_pairs_seed0 --rho 0.2 --alpha 1 --backward pairs --seed 0
"$python" "$here/plot.py" "$out"
