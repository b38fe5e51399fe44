#!/usr/bin/env bash
# Instructions the CPU codec executes per row, counted by callgrind
# (repeatable where timings are not): compress, expand, combine encode and
# combine decode of codec_bench's message (bf16, 8192 rows, one thread).
#
#   perf/codec_callgrind.sh [CODEC_BENCH] [H...]     (default: build/perf/codec_bench 1024 4096 7168)
#
# Only the codec's own entry point is counted (--toggle-collect). Each
# benchmark runs its step once while setting up and once timed (1 iteration
# with --benchmark_min_time=0), except combine decode (timed only).
set -euo pipefail
bench=${1:-build/perf/codec_bench}
shift || true
sizes=("$@")
((${#sizes[@]})) || sizes=(1024 4096 7168)
rows=8192
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steps=("compress:CpuCodec::dispatch_encode:2" "expand:CpuCodec::dispatch_decode:2"
       "combine_encode:CpuCodec::combine_encode:2" "combine_decode:CpuCodec::combine_decode:1")
printf '| H | step | instructions per row |\n|---|---|---|\n'
for h in "${sizes[@]}"; do
  for entry in "${steps[@]}"; do
    IFS=: read -r name fn calls <<<"$entry"
    out="$tmp/$name.$h"
    LSHMOE_CPU_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
      --toggle-collect="*${fn}*" "$bench" --benchmark_min_time=0 \
      --benchmark_filter="BM_${name}/H:${h}/threads:1/" >/dev/null 2>&1
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    printf '| %s | %s | %d |\n' "$h" "$name" "$((total / calls / rows))"
  done
done
