#!/usr/bin/env bash
# The all-to-all on a slow link: 4 test hosts in network namespaces, each
# joined to a bridge by a veth link limited with tc (tbf) to a rate in both
# directions (default 10 Gbit/s), addresses from the benchmarking range
# 198.18.0.0/15. Runs lshmoe_exchange_bench on every host over UCX's TCP
# transport: raw and compressed (LSHMOE_RATIO, default 0.2), structured
# tokens, H = 4096 bf16, dispatch + combine; rank 0 prints the time ratio.
# Namespaces are removed on exit, including when interrupted.
#
# usage (root): perf/netns_alltoall.sh [--build DIR] [--rate 10gbit] [--hosts 4]
#                                      [bench options, e.g. --rows 2048 --iters 10]
set -euo pipefail

build=build
rate=10gbit
hosts=4
bench_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done
bench=$build/perf/lshmoe_exchange_bench
[ -x "$bench" ] || { echo "netns_alltoall: $bench not built" >&2; exit 2; }
# 77: cannot run here (the tests count it as skipped).
[ "$(id -u)" = 0 ] || { echo "netns_alltoall: needs root (network namespaces, tc)" >&2; exit 77; }
command -v tc >/dev/null || { echo "netns_alltoall: tc (iproute2) is missing" >&2; exit 77; }
case $hosts in [2-9]) ;; *) echo "netns_alltoall: --hosts must be 2..9" >&2; exit 2 ;; esac

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
  echo "netns_alltoall: this machine does not allow network namespaces" >&2
  exit 77
fi
# tbf's bucket must hold a few GSO segments at this rate.
shape() { tc -n "$1" qdisc replace dev "$2" root tbf rate "$rate" burst 4mb latency 20ms; }
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
  echo "netns_alltoall: this kernel cannot build the test network (bridge, veth, tbf)" >&2
  exit 77
fi
echo "# $hosts hosts, veth links shaped to $rate each way (tbf), UCX over TCP"

port=$((20000 + $$ % 20000))
for ((i = 0; i < hosts; i++)); do
  ip netns exec "${tag}h$i" env MASTER_ADDR=198.18.0.1 MASTER_PORT=$port RANK=$i \
    WORLD_SIZE=$hosts UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 UCX_WARN_UNUSED_ENV_VARS=n \
    LSHMOE_CPU_THREADS=${LSHMOE_CPU_THREADS:-1} "$bench" "${bench_args[@]}" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
