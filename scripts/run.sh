#!/usr/bin/env bash
# The main job (README): set up, build, then
#  1. compress the embedded default workload (clustered synthetic tokens
#     generated at build time, 8 peers) and print the quality report as JSON;
#  2. run lshmoe_alltoall_perf on 4 ranks of this machine, raw and compressed
#     side by side (clustered rows, H = 4096 bf16, dispatch + combine, 1 to
#     16 MiB per rank): over links shaped to 1 Gbit/s between network
#     namespaces when this machine allows them (root), where a cluster's
#     inter-node all-to-all is link-bound as here; else on loopback, where
#     nothing limits the raw all-to-all but memory and compression only
#     costs CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
build_dir=${LSHMOE_BUILD_DIR:-build}
"$build_dir/perf/lshmoe_eval" "$build_dir/data/synthetic_tokens.npy" --peers 8 --expert ffn:1 "$@"
perf=(-b 1M -e 16M -f 4 -n 3 -w 1)
export LSHMOE_CPU_THREADS=${LSHMOE_CPU_THREADS:-1} UCX_WARN_UNUSED_ENV_VARS=n
status=0
bash perf/netns_run.sh --hosts 4 --rate 1gbit -- "$build_dir/perf/lshmoe_alltoall_perf" "${perf[@]}" ||
  status=$?
if [ "$status" = 77 ]; then
  echo "# no network namespaces here: 4 ranks on loopback instead" >&2
  UCX_TLS=${UCX_TLS:-tcp,self} bash scripts/launch_local.sh 4 "$build_dir/perf/lshmoe_alltoall_perf" \
    "${perf[@]}"
else
  exit "$status"
fi
