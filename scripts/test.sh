#!/usr/bin/env bash
# Sets up, builds and runs every test (README's test command): the main
# build's suite, a build of the libraries with CMake's default generator (so
# that a plain `cmake -S . -B build && cmake --build build` keeps working),
# and the decode fuzzer in its own configuration (the fuzz preset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${LSHMOE_BUILD_DIR:-build}

echo "test: the libraries with CMake's default generator (build-default/)"
cmake -S . -B build-default -DLSHMOE_BUILD_TESTS=OFF -DLSHMOE_BUILD_PERF=OFF >/dev/null
cmake --build build-default --parallel 2 >/dev/null

ctest --test-dir "$build" --output-on-failure -j 2

echo "test: the decode fuzzer (fuzz preset, build-fuzz/)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
ctest --preset fuzz
