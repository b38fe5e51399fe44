#!/usr/bin/env bash
# A rank of lshmoe_alltoall_perf killed mid-run: every other rank stops with
# an error that names the failure, within LSHMOE_TIMEOUT_MS, never a hang.
#
# usage: alltoall_dying_rank.sh TOOL
set -uo pipefail
tool=$1
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
export MASTER_ADDR=127.0.0.1 MASTER_PORT=$((20000 + RANDOM % 12000)) WORLD_SIZE=3
export LSHMOE_TIMEOUT_MS=3000 UCX_TLS=tcp,self UCX_WARN_UNUSED_ENV_VARS=n LSHMOE_CPU_THREADS=1
pids=()
for r in 0 1 2; do
  RANK=$r "$tool" -b 4M -e 4M --hidden 512 -n 100000 -w 0 > "$dir/$r.out" 2> "$dir/$r.err" &
  pids+=($!)
done
# Wait until the table has started (rank 0 prints its header), then kill rank 2.
for _ in $(seq 100); do
  grep -q "size" "$dir/0.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "size" "$dir/0.out" || { echo "the run never started"; cat "$dir"/*.err; exit 1; }
sleep 0.5
kill -9 "${pids[2]}"
status=0
for r in 0 1; do
  # Bounded: the timeout is 3 s; 30 s means a hang.
  for _ in $(seq 300); do kill -0 "${pids[$r]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${pids[$r]}" 2>/dev/null; then
    echo "rank $r still running 30 s after rank 2 died: a hang"
    status=1
    continue
  fi
  wait "${pids[$r]}"
  rc=$?
  echo "rank $r: exit $rc: $(tail -n 1 "$dir/$r.err")"
  if [ "$rc" = 0 ] || ! grep -q "lshmoe_alltoall_perf: " "$dir/$r.err"; then
    echo "rank $r did not fail with a message"
    status=1
  fi
done
exit $status
