#!/usr/bin/env bash
# Every check that needs the GPU, in one run (perf/RESULTS.md records each):
#   1. unpack the carried Debian packages (perf/gpu_deps.sh) into a prefix;
#   2. build Release for sm_90: the GPU tests, the net plugin and its
#      harness, the NCCL checker, the CUDA codec benchmark;
#   3. run the GPU tests, the plugin harness and the codec benchmark (8
#      peers x 8192 bf16 rows, H = 4096 and 7168, against a device copy);
#   4. real NCCL, 2 ranks on the one GPU (each its own NCCL_HOSTID, P2P and
#      SHM off so the net carries everything): an all-reduce and an
#      all-to-all through NCCL_NET=lshmoe (the plugin) and through NCCL's
#      own Socket net, results checked exactly and compared;
#   5. the compressed all-to-all on device buffers over an NCCL communicator
#      (lshmoe_comm_create_from_nccl), 2 ranks, identity expert, and a round
#      with two experts per rank (lshmoe_dispatch_experts_async);
#   6. the LD_PRELOAD shim under the real NCCL, 2 ranks: the shim's NCCL
#      programs (test/shim/shim_step.c, managed memory) without it and with
#      it (compressed on the GPU by its device back end, within bounds), and
#      PyTorch (all_to_all_single equal and unequal, a small MoE layer
#      forward and backward) with the shim loaded and without it, results
#      equal; a compressed ncclAlltoAll captured in a CUDA graph, replayed
#      with new inputs, against eager runs;
#      the PyTorch binding on CUDA tensors through Communicator.from_nccl;
#   7. lshmoe_alltoall_perf --backend nccl (NCCL's all-to-all against the
#      compressed one on device buffers), eager and from CUDA graphs;
#   8. a short table, last.
# usage (on the GPU machine, carrying .gpu-debs): bash perf/gpu_check.sh
# Sized for about 8 minutes on an H200 (16 cores): give the run 600 s. Every
# step has its own limit within GPU_CHECK_BUDGET seconds (default 540), so
# a hang costs one step and the table still prints.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-/tmp/lshmoe-gpu-out}
mkdir -p "$out"
declare -A result
budget=${GPU_CHECK_BUDGET:-540}
# limit N: N seconds, or what is left of the budget (keeping 15 s for the table).
limit() {
  local left=$((budget - SECONDS - 15))
  [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"
}

# 1. Packages into a prefix (never over /).
prefix=/tmp/lshmoe-deps
arch=x86_64-linux-gnu
mkdir -p $prefix
unpacked=0 gtest_dir=
for f in .gpu-debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" $prefix && unpacked=1; done
export PATH=$prefix/usr/bin:/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer:$PATH
# Without carried packages (a dry run where they are installed) the system's are used.
if [ "$unpacked" = 1 ]; then
  export PKG_CONFIG_PATH=$prefix/usr/lib/$arch/pkgconfig:$prefix/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$prefix
  export LD_LIBRARY_PATH=$prefix/usr/lib/$arch:${LD_LIBRARY_PATH:-}
  export UCX_MODULE_DIR=$prefix/usr/lib/$arch/ucx
  export HWLOC_PLUGINS_PATH=$prefix/usr/lib/$arch/hwloc
  gtest_dir=$prefix/usr/lib/$arch/cmake/GTest
fi
export UCX_WARN_UNUSED_ENV_VARS=n

# NCCL: the toolkit's, else the Python wheel's.
nccl_home=${NCCL_HOME:-}
if [ -z "$nccl_home" ] && [ ! -e /usr/local/cuda/include/nccl.h ]; then
  nccl_home=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null)
  if [ -n "$nccl_home" ] && [ ! -e "$nccl_home/lib/libnccl.so" ]; then
    ln -sf libnccl.so.2 "$nccl_home/lib/libnccl.so"
  fi
fi
[ -n "$nccl_home" ] && export NCCL_HOME=$nccl_home LD_LIBRARY_PATH=$nccl_home/lib:$LD_LIBRARY_PATH

# 2. Build; -k 0 so that one target that fails does not take the others with it.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
build=build-gpu
# A target that fails to build must not leave an older binary to be run.
targets=(test/gpu/lshmoe_gpu_tests test/gpu/lshmoe_nccl_net_check plugin/net/libnccl-net-lshmoe.so
  test/lshmoe_net_plugin_tests perf/lshmoe_cuda_codec_bench test/gpu/lshmoe_nccl_exchange_check
  test/gpu/shim_step_gpu test/gpu/shim_graph_check perf/lshmoe_alltoall_perf
  plugin/preload/liblshmoe_preload.so
  plugin/preload/liblshmoe_preload_cuda.so)
for t in "${targets[@]}"; do rm -f "$build/$t"; done
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DLSHMOE_BUILD_PERF=ON ${gtest_dir:+-DGTest_DIR=$gtest_dir} \
  > "$out/configure.log" 2>&1 && \
  timeout "$(limit 300)" ninja -k 0 -C $build lshmoe_gpu_tests lshmoe_nccl_net_check \
    nccl_net_lshmoe lshmoe_net_plugin_tests lshmoe_cuda_codec_bench lshmoe_nccl_exchange_check \
    shim_step_gpu shim_graph_check lshmoe_alltoall_perf lshmoe_preload > "$out/build.log" 2>&1
result[build]=$?
[ "${result[build]}" = 0 ] || { tail -n 30 "$out/configure.log"; grep -A8 FAILED "$out/build.log" | head -60; }
built() { [ -x "$build/$1" ]; }

# 3. GPU tests and the plugin harness.
if built test/gpu/lshmoe_gpu_tests; then
  timeout "$(limit 120)" $build/test/gpu/lshmoe_gpu_tests > "$out/gpu_tests.log" 2>&1
  result[gpu_tests]=$?
  grep -E '^\[  FAILED|^\[  PASSED|^\[==========\]' "$out/gpu_tests.log" | head -n 20
  if [ "${result[gpu_tests]}" = 0 ] && grep -q 'SKIPPED' "$out/gpu_tests.log"; then
    result[gpu_tests]=77
  fi
fi
if built test/lshmoe_net_plugin_tests; then
  LD_LIBRARY_PATH=$build/plugin/net:$LD_LIBRARY_PATH timeout "$(limit 90)" \
    $build/test/lshmoe_net_plugin_tests > "$out/plugin_tests.log" 2>&1
  result[plugin_tests]=$?
  tail -n 3 "$out/plugin_tests.log"
fi

# compute-sanitizer memcheck over the CUDA codec's tests (bf16).
if built test/gpu/lshmoe_gpu_tests; then
  if command -v compute-sanitizer > /dev/null; then
    timeout "$(limit 150)" compute-sanitizer --tool memcheck --error-exitcode 9 \
      $build/test/gpu/lshmoe_gpu_tests \
      --gtest_filter='DTypes/CudaCodecTest.IdentityExpert*/bf16:DTypes/CudaCodecTest.Corrupt*/bf16:DTypes/CudaCodecTest.Combine*/bf16:DTypes/CudaCodecTest.Regrouped*/bf16' \
      > "$out/memcheck.log" 2>&1
    result[memcheck]=$?
    tail -n 3 "$out/memcheck.log"
  else
    result[memcheck]=missing
  fi
fi

# The CUDA codec against a device-to-device copy.
if built perf/lshmoe_cuda_codec_bench; then
  timeout "$(limit 150)" $build/perf/lshmoe_cuda_codec_bench > "$out/codec_bench.md" \
    2> "$out/codec_bench.err"
  result[codec_bench]=$?
fi

# 4. Real NCCL through each net.
run_nccl() {  # net
  local net=$1 port=$((29000 + RANDOM % 1000)) pids=() rc=0
  for r in 0 1; do
    env MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 \
      NCCL_HOSTID=lshmoe-check-$r NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 \
      NCCL_NET=$net NCCL_NET_PLUGIN=$root/$build/plugin/net/libnccl-net-lshmoe.so \
      NCCL_SOCKET_IFNAME=lo LSHMOE_NET_IF=lo NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET \
      timeout "$(limit 90)" $build/test/gpu/lshmoe_nccl_net_check > "$out/nccl_${net}_$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  return $rc
}
if built test/gpu/lshmoe_nccl_net_check && [ -e $build/plugin/net/libnccl-net-lshmoe.so ]; then
  for net in lshmoe Socket; do
    run_nccl $net
    result[nccl_$net]=$?
    grep -h 'nccl_net_check rank' "$out"/nccl_${net}_*.log
    grep -h -m2 -E 'Using network|Loaded net plugin' "$out"/nccl_${net}_0.log
  done
fi
# The device all-to-all over NCCL (lshmoe_comm_create_from_nccl), 2 ranks.
if built test/gpu/lshmoe_nccl_exchange_check; then
  port=$((30000 + RANDOM % 1000)) pids=() result[nccl_exchange]=0
  for r in 0 1; do
    env MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 NCCL_HOSTID=lshmoe-x-$r \
      NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo \
      timeout "$(limit 90)" $build/test/gpu/lshmoe_nccl_exchange_check \
      > "$out/nccl_exchange_$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || result[nccl_exchange]=$?; done
  cat "$out"/nccl_exchange_*.log | grep -E 'nccl_exchange_check' | head -20
fi
# 6. The shim under the real NCCL: the same programs with and without it.
shim=$root/$build/plugin/preload/liblshmoe_preload.so
run_shim_step() {  # raw|shim MODE
  local tag=$1 mode=$2 pids=() rc=0 preload=()
  # With the shim the token all-to-alls are compressed on the GPU (the
  # device back end beside the shim), and checked within the codec's bounds.
  [ "$tag" = shim ] && preload=(LD_PRELOAD=$shim LSHMOE_HIDDEN=256 LSHMOE_STATS=1 SHIM_EXPECTED=1)
  rm -f "$out/shim_$mode.id"
  for r in 0 1; do
    env RANK=$r WORLD_SIZE=2 NCCL_HOSTID=lshmoe-s-$r NCCL_TEST_ID_FILE=$out/shim_$mode.id \
      NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo SHIM_EXPERT=nonlinear "${preload[@]}" \
      timeout "$(limit 60)" $build/test/gpu/shim_step_gpu "$mode" \
      > "$out/shim_${tag}_${mode}_$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  return $rc
}
if built test/gpu/shim_step_gpu && [ -e "$shim" ]; then
  result[shim_programs]=0
  for mode in step step-alltoall alltoall passthrough lifecycle; do
    for tag in raw shim; do
      run_shim_step $tag $mode
      rc=$?
      [ "$rc" = 0 ] || result[shim_programs]=$rc
      if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        echo "shim_step $tag $mode failed (exit $rc)"
        tail -n 5 "$out"/shim_${tag}_${mode}_*.log
      fi
    done
  done
  grep -h 'STATS' "$out"/shim_shim_*_0.log | head -4
  # The shim ran on the GPU only if it compressed something there.
  if [ "${result[shim_programs]}" = 0 ] &&
    ! grep -qE 'shim communicator 0 .* [1-9][0-9]* compressed' "$out"/shim_shim_step_0.log; then
    echo "shim_step: nothing compressed on the GPU (no device back end, or no CUDA codec)"
    result[shim_programs]=1
  fi
fi
# A compressed ncclAlltoAll captured in a CUDA graph: replays equal eager runs.
if built test/gpu/shim_graph_check && [ -e "$shim" ]; then
  result[shim_graph]=0
  for tag in raw shim; do
    pids=() preload=()
    [ "$tag" = shim ] && preload=(LD_PRELOAD=$shim LSHMOE_HIDDEN=256 LSHMOE_STATS=1 SHIM_EXPECTED=1)
    rm -f "$out/shim_graph.id"
    for r in 0 1; do
      env RANK=$r WORLD_SIZE=2 NCCL_HOSTID=lshmoe-g-$r NCCL_TEST_ID_FILE=$out/shim_graph.id \
        NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo "${preload[@]}" \
        timeout "$(limit 60)" $build/test/gpu/shim_graph_check > "$out/shim_graph_${tag}_$r.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || result[shim_graph]=$?; done
  done
  tail -n 3 "$out"/shim_graph_*_0.log
  if [ "${result[shim_graph]}" = 0 ] &&
    ! grep -qE 'shim communicator 0 .* [1-9][0-9]* compressed' "$out"/shim_graph_shim_0.log; then
    echo "shim_graph_check: nothing compressed on the GPU"
    result[shim_graph]=1
  fi
fi
if [ -e "$shim" ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  result[shim_torch]=0
  for tag in raw shim lshmoe; do
    port=$((31000 + RANDOM % 1000)) pids=() preload=()
    # Interposition under PyTorch: transparent without LSHMOE_HIDDEN (shim),
    # within bounds with it (lshmoe).
    [ "$tag" = shim ] && preload=(LD_PRELOAD=$shim)
    [ "$tag" = lshmoe ] && preload=(LD_PRELOAD=$shim LSHMOE_HIDDEN=256 LSHMOE_STATS=1)
    for r in 0 1; do
      env MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 NCCL_HOSTID=lshmoe-t-$r \
        NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo "${preload[@]}" \
        timeout "$(limit 120)" python3 perf/gpu/shim_torch_check.py --out "$out" --tag $tag \
        > "$out/shim_torch_${tag}_$r.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || result[shim_torch]=$?; done
  done
  [ "${result[shim_torch]}" = 0 ] && { python3 perf/gpu/shim_torch_check.py --out "$out" --compare \
    > "$out/shim_torch_compare.log" 2>&1 || result[shim_torch]=$?; }
  cat "$out/shim_torch_compare.log" 2>/dev/null | head -20
  tail -n 3 "$out"/shim_torch_*_0.log
else
  result[shim_torch]=missing
fi
# The PyTorch binding on CUDA tensors (Communicator.from_nccl), 2 ranks:
# identity round trip and its backward through a device communicator.
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  LSHMOE_LIBRARY=$root/$build/src/liblshmoe.so.0 NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo \
    timeout "$(limit 120)" python3 python/tests/binding_test.py --world 2 --case cuda \
    > "$out/binding_cuda.log" 2>&1
  result[binding_cuda]=$?
  tail -n 4 "$out/binding_cuda.log"
else
  result[binding_cuda]=missing
fi
# lshmoe_alltoall_perf on device buffers: NCCL's all-to-all against the
# compressed one, eager and replayed from CUDA graphs (-G), 2 ranks.
run_alltoall_perf() {  # TAG ARGS...
  local tag=$1 pids=() rc=0 port=$((32000 + RANDOM % 1000))
  shift
  for r in 0 1; do
    env MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 NCCL_HOSTID=lshmoe-p-$r \
      UCX_TLS=tcp,self NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo LSHMOE_RATIO=0.2 \
      timeout "$(limit 90)" $build/perf/lshmoe_alltoall_perf --backend nccl "$@" \
      -J "$out/alltoall_perf_$tag.json" > "$out/alltoall_perf_${tag}_$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  grep -vE '^#  Rank|^# Using' "$out/alltoall_perf_${tag}_0.log" | tail -n 12
  return $rc
}
if built perf/lshmoe_alltoall_perf; then
  run_alltoall_perf eager -b 1M -e 64M -f 4 -n 10 -w 2
  result[alltoall_perf]=$?
  run_alltoall_perf graph -b 1M -e 64M -f 4 -n 10 -w 2 -G 4
  rc=$?
  [ "$rc" = 0 ] || result[alltoall_perf]=$rc
fi
same=no
if [ -e "$out/nccl_lshmoe_0.log" ] && [ -e "$out/nccl_Socket_0.log" ]; then
  a=$(grep -ho 'checksum=[0-9]*' "$out"/nccl_lshmoe_*.log | sort | tr '\n' ' ')
  b=$(grep -ho 'checksum=[0-9]*' "$out"/nccl_Socket_*.log | sort | tr '\n' ' ')
  [ -n "$a" ] && [ "$a" = "$b" ] && same=yes
fi

# 8. The table.
status() {
  case ${result[$1]:-none} in
    0) echo pass ;;
    77) echo "skipped (no GPU)" ;;
    124 | 137) echo "timed out" ;;
    missing) echo "not run (tool missing)" ;;
    none) echo "not run" ;;
    *) echo "fail (exit ${result[$1]})" ;;
  esac
}
echo
echo "| check | result |"
echo "|---|---|"
echo "| build (sm_90) | $(status build) |"
echo "| time used | ${SECONDS} s of ${budget} s |"
echo "| GPU tests | $(status gpu_tests) |"
echo "| net plugin harness (UCX from Debian) | $(status plugin_tests) |"
echo "| NCCL all-reduce + all-to-all, NCCL_NET=lshmoe | $(status nccl_lshmoe) |"
echo "| NCCL all-reduce + all-to-all, NCCL_NET=Socket | $(status nccl_Socket) |"
echo "| same results through both nets | $same |"
echo "| compressed all-to-all over NCCL (device API) | $(status nccl_exchange) |"
echo "| compute-sanitizer memcheck, CUDA codec tests | $(status memcheck) |"
echo "| CUDA codec benchmarks | $(status codec_bench) |"
echo "| shim: NCCL programs with and without it (real NCCL) | $(status shim_programs) |"
echo "| lshmoe_alltoall_perf --backend nccl, eager and -G 4 | $(status alltoall_perf) |"
echo "| shim: compressed ncclAlltoAll in a CUDA graph, replays = eager | $(status shim_graph) |"
echo "| shim: PyTorch all_to_all_single + MoE layer, exact / within bounds | $(status shim_torch) |"
echo "| PyTorch binding on CUDA tensors (backward included) | $(status binding_cuda) |"
echo
cat "$out/codec_bench.md" 2>/dev/null
