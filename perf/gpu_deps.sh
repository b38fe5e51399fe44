#!/usr/bin/env bash
# Downloads the Debian packages the GPU machine lacks (it has CUDA, NCCL,
# CMake and ninja, but no UCX, hwloc or GoogleTest, and no package registry)
# into .gpu-debs/, which perf/gpu_check.sh unpacks into a prefix there.
# Run here, then carry .gpu-debs with the GPU run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download libucx0 libucx-dev libhwloc15 libhwloc-dev libgtest-dev googletest \
  libnuma1 librdmacm1 libibverbs1 ibverbs-providers libudev1 \
  pkgconf pkgconf-bin libpkgconf3
ls -l
