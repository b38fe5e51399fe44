#!/usr/bin/env bash
# Sets up, builds and runs every test (README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir "${LSHMOE_BUILD_DIR:-build}" --output-on-failure -j 2
