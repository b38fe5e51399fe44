#!/usr/bin/env bash
# One run of lshmoe_alltoall_perf through a launcher, then its checks
# (check_alltoall_run.py): COMMAND gets "-J PREFIX.json" appended, its table
# goes to PREFIX.txt.
#
# usage: alltoall_run.sh PREFIX RATIO SOURCE_DIR [--max-rel-err=E] -- COMMAND...
set -euo pipefail
prefix=$1 ratio=$2 src=$3
shift 3
checks=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  checks+=("$1")
  shift
done
[ "${1:-}" = -- ] && shift
rm -f "$prefix.json" "$prefix.png"
status=0
"$@" -J "$prefix.json" > "$prefix.txt" || status=$?
cat "$prefix.txt"
[ "$status" = 0 ] || { echo "alltoall_run: the run failed (exit $status)" >&2; exit "$status"; }
/usr/bin/python3 "$src/test/perf/check_alltoall_run.py" "$prefix.txt" "$prefix.json" \
  "$src/perf/alltoall_perf.schema.json" "$src/perf/plot_alltoall.py" "$prefix.png" --ratio "$ratio" \
  "${checks[@]}"
