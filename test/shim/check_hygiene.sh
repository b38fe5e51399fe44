#!/usr/bin/env bash
# A preloaded shim reaches every process of a job, shells and launchers
# included: it must depend on no NCCL, CUDA, UCX or hwloc library, run no
# constructor of its own, and leave a process that never calls NCCL exactly
# as it was (not even reading its settings: an invalid one goes unnoticed).
#
# usage: check_hygiene.sh LIBLSHMOE_PRELOAD.so
set -uo pipefail
shim=$1
needed=$(readelf -d "$shim" | awk '/NEEDED/ {print $NF}')
if echo "$needed" | grep -qiE 'nccl|cuda|cublas|ucp|ucs|uct|hwloc'; then
  echo "the shim links what a shell must not load: $needed" >&2
  exit 1
fi
# One entry: the C runtime's frame_dummy; no static constructor of ours.
init=$(readelf -d "$shim" | awk '/INIT_ARRAYSZ/ {print $(NF-1)}')
if [ "${init:-0}" -gt 8 ]; then
  echo "the shim has $((init / 8)) constructors" >&2
  exit 1
fi
out=$(LD_PRELOAD=$shim LSHMOE_RATIO=bogus LSHMOE_DEBUG=INFO bash -c 'echo hello' 2>&1)
rc=$?
if [ "$rc" != 0 ] || [ "$out" != hello ]; then
  echo "a shell under the shim printed \"$out\" (exit $rc)" >&2
  exit 1
fi
echo "shim hygiene: needs only $(echo $needed | tr ' ' ','), no constructor, a shell untouched"
