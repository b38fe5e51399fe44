#!/usr/bin/env bash
# The main job (README): set up, build, then
#  1. compress the embedded default workload (clustered synthetic tokens
#     generated at build time, 8 peers) and print the quality report as JSON;
#  2. run a real 4-rank compressed all-to-all on this machine (4 processes,
#     UCX over TCP on loopback, clustered tokens, H = 4096 bf16) and print
#     its time against the raw all-to-all measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
build_dir=${LSHMOE_BUILD_DIR:-build}
"$build_dir/perf/lshmoe_eval" "$build_dir/data/synthetic_tokens.npy" --peers 8 --expert ffn:1 "$@"
UCX_TLS=${UCX_TLS:-tcp,self} LSHMOE_CPU_THREADS=${LSHMOE_CPU_THREADS:-1} \
  UCX_WARN_UNUSED_ENV_VARS=n \
  bash scripts/launch_local.sh 4 "$build_dir/perf/lshmoe_exchange_bench" --rows 1024 --iters 5
