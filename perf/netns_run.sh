#!/usr/bin/env bash
# Runs a program on N test hosts in network namespaces, each joined to a
# bridge by a veth link limited with tc (tbf) to a rate in both directions
# (default 10 Gbit/s), addresses from the benchmarking range 198.18.0.0/15,
# one rank per host with torchrun's environment (MASTER_ADDR=198.18.0.1,
# MASTER_PORT, RANK, WORLD_SIZE), UCX over TCP on the shaped link. Made for
# lshmoe_alltoall_perf: after the run it prints the raw half's bus bandwidth
# as a fraction of the link rate. The hosts share this machine's cores (N
# hosts on C cores: C/N cores each, LSHMOE_CPU_THREADS=1 per rank unless set):
# where a rank's codec needs more CPU than that, the compressed half is
# CPU-bound, not link-bound. Namespaces are removed on exit, also when
# interrupted. Exit 77: this machine cannot build the network (not root, no
# namespaces, no tc).
#
# usage (root): perf/netns_run.sh [--hosts 4] [--rate 10gbit] -- PROGRAM [ARGS...]
set -euo pipefail

rate=10gbit
hosts=4
while [ $# -gt 0 ]; do
  case $1 in
    --rate) rate=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "netns_run: unknown option $1 (usage: netns_run.sh [--hosts N] [--rate R] -- PROGRAM ARGS)" >&2; exit 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "netns_run: no program to run (after --)" >&2; exit 2; }
program=$(command -v "$1" || true)
[ -n "$program" ] && [ -x "$program" ] || { echo "netns_run: $1 is not an executable" >&2; exit 2; }
shift
# tc's rate in bits per second, for the link fraction.
case $rate in
  *gbit) rate_bps=$(awk -v r="${rate%gbit}" 'BEGIN { print r * 1e9 }') ;;
  *mbit) rate_bps=$(awk -v r="${rate%mbit}" 'BEGIN { print r * 1e6 }') ;;
  *) echo "netns_run: --rate takes NUMBERgbit or NUMBERmbit" >&2; exit 2 ;;
esac
# 77: cannot run here (the tests count it as skipped).
[ "$(id -u)" = 0 ] || { echo "netns_run: needs root (network namespaces, tc)" >&2; exit 77; }
command -v tc >/dev/null || { echo "netns_run: tc (iproute2) is missing" >&2; exit 77; }
case $hosts in [2-9]) ;; *) echo "netns_run: --hosts must be 2..9" >&2; exit 2 ;; esac

tag=lsm$$            # unique per run: parallel runs do not collide
switch=${tag}sw
namespaces=("$switch")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$switch" 2>/dev/null; then
  echo "netns_run: this machine does not allow network namespaces" >&2
  exit 77
fi
# tbf's bucket: 1 ms of the rate, at least a few GSO segments (128 KiB). A
# larger bucket lets a message smaller than it pass at the veth's own speed:
# with 4 MB, compressed all-to-alls fitted and raw ones did not, and the
# speedup exceeded 1/ratio.
burst=$(awk -v r="$rate_bps" 'BEGIN { b = r / 8 / 1000; printf "%d", b < 131072 ? 131072 : b }')
shape() { tc -n "$1" qdisc replace dev "$2" root tbf rate "$rate" burst "$burst" latency 20ms; }
build_hosts() {
  ip -n "$switch" link add br0 type bridge &&
    ip -n "$switch" link set br0 up || return 1
  for ((i = 0; i < hosts; i++)); do
    local ns=${tag}h$i
    namespaces+=("$ns")
    ip netns add "$ns" &&
      ip link add "${tag}a$i" netns "$ns" type veth peer name "${tag}b$i" netns "$switch" &&
      ip -n "$ns" link set "${tag}a$i" name eth0 &&
      ip -n "$ns" addr add "198.18.0.$((i + 1))/24" dev eth0 &&
      ip -n "$ns" link set eth0 up &&
      ip -n "$ns" link set lo up &&
      ip -n "$switch" link set "${tag}b$i" master br0 up &&
      shape "$ns" eth0 &&
      shape "$switch" "${tag}b$i" || return 1
  done
}
# A kernel without bridges, veth or tbf cannot run this: skipped, not failed.
if ! build_hosts; then
  echo "netns_run: this kernel cannot build the test network (bridge, veth, tbf)" >&2
  exit 77
fi
echo "# $hosts hosts, veth links shaped to $rate each way (tbf), UCX over TCP, $(nproc) cores shared"

port=$((20000 + $$ % 20000))
out=$(mktemp -d)
for ((i = 0; i < hosts; i++)); do
  ip netns exec "${tag}h$i" env MASTER_ADDR=198.18.0.1 MASTER_PORT=$port RANK=$i \
    WORLD_SIZE=$hosts UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 UCX_WARN_UNUSED_ENV_VARS=n \
    LSHMOE_CPU_THREADS=${LSHMOE_CPU_THREADS:-1} "$program" "$@" > "$out/rank$i.out" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
for ((i = 0; i < hosts; i++)); do cat "$out/rank$i.out"; done
log=$out/rank0.out
# The raw half against the link: busbw is what each rank sent to the others per second.
raw=$(sed -n 's/^# Avg bus bandwidth *: *\([0-9.eE+-]*\) (raw)$/\1/p' "$log" | head -1)
if [ -n "$raw" ]; then
  awk -v bw="$raw" -v r="$rate_bps" -v rate="$rate" \
    'BEGIN { printf "# raw half at %.2f of the link (busbw %.3f GB/s, link %s = %.3f GB/s)\n", bw * 8e9 / r, bw, rate, r / 8e9 }'
fi
rm -rf "$out"
exit $status
