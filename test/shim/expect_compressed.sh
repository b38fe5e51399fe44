#!/usr/bin/env bash
# Runs a job with LSHMOE_STATS=1 into a fresh stats file, then requires one
# line per rank saying that the shim compressed messages on communicator 0:
# proof that the shim was in the job, whatever the job itself checks.
#
# usage: expect_compressed.sh STATS_FILE RANKS COMMAND [ARGS...]
set -uo pipefail
stats=$1
ranks=$2
shift 2
rm -f "$stats"
LSHMOE_STATS=1 LSHMOE_STATS_FILE=$stats "$@" || exit $?
pattern='shim communicator 0 \(rank [0-9]+ of [0-9]+\): [0-9]+ calls; messages [1-9][0-9]* compressed'
found=$(grep -cE "$pattern" "$stats" 2>/dev/null)
if [ "${found:-0}" -ne "$ranks" ]; then
  echo "expected $ranks ranks reporting compressed messages, found ${found:-0}:" >&2
  cat "$stats" >&2 2>/dev/null
  exit 1
fi
cat "$stats"
