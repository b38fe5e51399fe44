#!/usr/bin/env bash
# Installs a build into a temporary prefix and uses it as another project
# would: a C program built with find_package(lshmoe) and one built with
# pkg-config, each running a codec round trip through the installed
# library with the build tree out of reach; then the prefix is moved and
# both are built and run again (relocatable), and the installed tools and
# Python binding are run from the moved prefix.
# usage: check_install.sh BUILD_DIR
# It works in a temporary directory outside the build tree, removed at exit.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "check_install: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lshmoe-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
case $work in "$build"/*) fail "the temporary directory $work lies in the build tree" ;; esac
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

# What the prefix must hold.
for f in lib/liblshmoe.so lib/liblshmoe.so.0 lib/libnccl-net-lshmoe.so \
         include/lshmoe/lshmoe.h bin/lshmoe_info \
         lib/cmake/lshmoe/lshmoeConfig.cmake lib/cmake/lshmoe/lshmoeConfigVersion.cmake \
         lib/cmake/lshmoe/lshmoeTargets.cmake lib/pkgconfig/lshmoe.pc \
         lib/python3/dist-packages/lshmoe/__init__.py; do
  [ -e "$prefix/$f" ] || fail "the install lacks $f"
done
for target in liblshmoe_preload.so:plugin/preload/liblshmoe_preload.so \
              lshmoe_alltoall_perf:perf/lshmoe_alltoall_perf lshmoe_eval:perf/lshmoe_eval; do
  built=${target#*:}
  name=${target%%:*}
  [ ! -e "$build/$built" ] || [ -e "$prefix/lib/$name" ] || [ -e "$prefix/bin/$name" ] ||
    fail "$name was built but not installed"
done
[ "$(readlink "$prefix/lib/liblshmoe.so.0")" = "liblshmoe.so.0.1.0" ] ||
  fail "liblshmoe.so.0 does not point to the versioned library"

# No installed binary may find anything through the build tree.
while IFS= read -r -d '' f; do
  if readelf -h "$f" >/dev/null 2>&1; then
    if readelf -d "$f" | grep -E 'R(UN)?PATH' | grep -qF "$build"; then
      fail "$f has a run path into the build tree: $(readelf -d "$f" | grep -E 'R(UN)?PATH')"
    fi
  fi
done < <(find "$prefix" -type f -print0)

# Runs a command with the build tree hidden (an empty directory mounted over
# it, in a mount namespace of its own) where that is allowed, else as is:
# the run paths above and ldd below already show where the library comes from.
hidden() {
  if unshare --mount true 2>/dev/null; then
    unshare --mount bash -c 'mount -t tmpfs none "$0" && exec "$@"' "$build" "$@"
  else
    "$@"
  fi
}

# $1: the prefix to build against; $2: a directory for the consumers.
consumers() {
  local at=$1 out=$2
  mkdir -p "$out"
  cmake -S "$here/consumer" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$at" >"$out/cmake.log" 2>&1 ||
    { cat "$out/cmake.log"; fail "find_package(lshmoe) failed against $at"; }
  cmake --build "$out/cmake" >>"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; fail "build failed"; }
  local flags
  flags=$(PKG_CONFIG_PATH="$at/lib/pkgconfig" pkg-config --cflags --libs lshmoe) ||
    fail "pkg-config knows no lshmoe in $at"
  # shellcheck disable=SC2086
  cc -std=c11 -o "$out/pkg_config_round_trip" "$here/consumer/round_trip.c" $flags -lm
  for program in "$out/cmake/round_trip" "$out/pkg_config_round_trip"; do
    local lib
    lib=$(LD_LIBRARY_PATH="$at/lib" ldd "$program" | awk '/liblshmoe\.so/ {print $3}')
    case $lib in
      "$at"/lib/*) ;;
      *) fail "$program loads liblshmoe from '$lib', not from $at/lib" ;;
    esac
    LD_LIBRARY_PATH="$at/lib" hidden "$program" || fail "$program failed"
  done
}

consumers "$prefix" "$work/first"
mv "$prefix" "$work/moved"
prefix=$work/moved
consumers "$prefix" "$work/second"

# The installed tools from the moved prefix (their run path is $ORIGIN/../lib).
hidden "$prefix/bin/lshmoe_info" >"$work/info.txt" || fail "lshmoe_info failed"
grep -q "LSHMOE_RATIO" "$work/info.txt" || fail "lshmoe_info printed no configuration"
if [ -e "$prefix/bin/lshmoe_alltoall_perf" ]; then
  lib=$(ldd "$prefix/bin/lshmoe_alltoall_perf" | awk '/liblshmoe\.so/ {print $3}')
  [ "$(realpath "$lib")" = "$(realpath "$prefix/lib/liblshmoe.so.0")" ] ||
    fail "the moved lshmoe_alltoall_perf loads liblshmoe from '$lib'"
fi
# The binding finds the library of its own prefix.
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  loaded=$(PYTHONPATH="$prefix/lib/python3/dist-packages" hidden /usr/bin/python3 -c \
    'import lshmoe, lshmoe._library as l; print(l.lib._name)') || fail "import lshmoe failed"
  [ "$loaded" = "$prefix/lib/liblshmoe.so.0" ] || fail "the binding loaded '$loaded'"
fi
echo "check_install: installed, used by find_package and pkg-config consumers, moved, used again"
