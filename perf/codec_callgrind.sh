#!/usr/bin/env bash
# Instructions the CPU codec executes per row, counted by callgrind
# (repeatable where timings are not): compress, expand, combine encode and
# combine decode of codec_bench's message (bf16, 8192 rows, one thread).
#
#   perf/codec_callgrind.sh [CODEC_BENCH] [STEP:H ...]
#     STEP: compress, expand, combine_encode or combine_decode
#     (default: build/perf/codec_bench compress:1024 compress:4096 expand:4096 combine_decode:4096)
#
# Only the codec's own entry point is counted (--toggle-collect). Each
# benchmark runs its step once while setting up and once timed (1 iteration
# with --benchmark_min_time=0), except combine decode (timed only).
set -euo pipefail
bench=${1:-build/perf/codec_bench}
shift || true
runs=("$@")
((${#runs[@]})) || runs=(compress:1024 compress:4096 expand:4096 combine_decode:4096)
rows=8192
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# step -> the codec entry point counted, and how many times the benchmark calls it.
declare -A entry=([compress]=dispatch_encode [expand]=dispatch_decode
                  [combine_encode]=combine_encode [combine_decode]=combine_decode)
declare -A calls=([compress]=2 [expand]=2 [combine_encode]=2 [combine_decode]=1)
printf '| step | H | instructions per row |\n|---|---|---|\n'
for run in "${runs[@]}"; do
  name=${run%%:*} h=${run##*:}
  [ -n "${entry[$name]:-}" ] || { echo "codec_callgrind: unknown step $name" >&2; exit 2; }
  out="$tmp/$name.$h"
  LSHMOE_CPU_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect="*CpuCodec::${entry[$name]}(*" "$bench" --benchmark_min_time=0 \
    --benchmark_filter="BM_${name}/H:${h}/threads:1/" >/dev/null 2>&1
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '| %s | %s | %d |\n' "$name" "$h" "$((total / ${calls[$name]} / rows))"
done
