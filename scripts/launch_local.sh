#!/usr/bin/env bash
# Runs N ranks of a program on this machine, torchrun-style: every rank gets
# MASTER_ADDR=127.0.0.1, a common MASTER_PORT (MASTER_PORT if set, else a
# random one), RANK and WORLD_SIZE. When a rank fails the others are stopped;
# the exit status is the first failure's.
#
# usage: scripts/launch_local.sh N PROGRAM [ARGS...]
set -uo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N PROGRAM [ARGS...]" >&2
  exit 2
fi
world=$1
shift
export MASTER_ADDR=127.0.0.1
export MASTER_PORT=${MASTER_PORT:-$((20000 + RANDOM % 12000))}  # below the ephemeral range
export WORLD_SIZE=$world
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done; }
trap 'stop; exit 130' INT TERM
for ((r = 0; r < world; r++)); do
  RANK=$r "$@" &
  pids+=($!)
done
# Waits by pid: a bare `wait -n` answers 127 ("no children") when the last
# ranks exit together and bash has already reaped them.
declare -A running
for pid in "${pids[@]}"; do running[$pid]=1; done
status=0
record() {
  if [ "$1" -ne 0 ] && [ $status -eq 0 ]; then
    status=$1
    stop
  fi
}
while ((${#running[@]})); do
  finished=""
  wait -n -p finished "${!running[@]}" 2>/dev/null
  rc=$?
  if [ -z "${finished:-}" ]; then  # bash lost track of which: ask each
    for pid in "${!running[@]}"; do
      wait "$pid"
      record $?
    done
    break
  fi
  unset "running[$finished]"
  record $rc
done
exit $status
