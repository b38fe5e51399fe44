#!/usr/bin/env bash
# Fails when a shared library exports symbols other than the public C API
# (lshmoe_*) and the C++ standard library's own template instances.
set -euo pipefail
lib=$1
extra=$(nm -D --defined-only "$lib" | awk '{print $3}' |
        grep -v -E '^(lshmoe_|_ZNSt|_ZNKSt|_ZZNSt|_ZZNKSt|_ZTISt|_ZTSSt|_ZTVSt)' || true)
if [ -n "$extra" ]; then
  echo "$lib exports symbols outside the public API:"
  echo "$extra"
  exit 1
fi
echo "$lib exports $(nm -D --defined-only "$lib" | grep -c ' T lshmoe_') lshmoe_* functions and nothing else of its own"
