#!/usr/bin/env bash
# The main job (README): set up, build, then compress the embedded default
# workload (clustered synthetic tokens generated at build time, 8 peers) and
# print the quality report as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
build_dir=${LSHMOE_BUILD_DIR:-build}
exec "$build_dir/perf/lshmoe_eval" "$build_dir/data/synthetic_tokens.npy" --peers 8 --expert ffn:1 "$@"
