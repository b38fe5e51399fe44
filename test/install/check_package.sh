#!/usr/bin/env bash
# Makes the Debian packages of a build (cpack -G DEB) and checks them:
# runtime, -dev and Python packages, their contents, that the runtime's
# dependencies are Debian's UCX and hwloc, and that lshmoe_info runs from
# the unpacked runtime package.
# usage: check_package.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
work=$2
fail() { echo "check_package: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack failed"; }

package() {
  local found
  found=$(find "$work" -maxdepth 1 -name "$1_*.deb" | head -n 1)
  [ -n "$found" ] || fail "no $1 package in $work: $(ls "$work")"
  echo "$found"
}
runtime=$(package lshmoe)
dev=$(package lshmoe-dev)
python=$(package python3-lshmoe)

depends=$(dpkg-deb -f "$runtime" Depends)
for d in libucx0 libhwloc15; do
  echo "$depends" | grep -qw "$d" || fail "lshmoe's Depends ($depends) lacks $d"
done
dpkg-deb -f "$dev" Depends | grep -q "lshmoe (= " || fail "lshmoe-dev does not depend on lshmoe"

contents() { dpkg-deb -c "$1" | awk '{print $6}'; }
for f in ./usr/lib/liblshmoe.so.0 ./usr/lib/libnccl-net-lshmoe.so ./usr/bin/lshmoe_info; do
  contents "$runtime" | grep -qxF "$f" || fail "lshmoe lacks $f"
done
for f in ./usr/include/lshmoe/lshmoe.h ./usr/lib/pkgconfig/lshmoe.pc \
         ./usr/lib/cmake/lshmoe/lshmoeConfig.cmake ./usr/lib/liblshmoe.so; do
  contents "$dev" | grep -qxF "$f" || fail "lshmoe-dev lacks $f"
done
contents "$python" | grep -qxF ./usr/lib/python3/dist-packages/lshmoe/__init__.py ||
  fail "python3-lshmoe lacks the binding"
if contents "$runtime" | grep -q 'include/'; then fail "the runtime package carries headers"; fi

root=$work/root
dpkg-deb -x "$runtime" "$root"
"$root/usr/bin/lshmoe_info" >"$work/info.txt" || fail "lshmoe_info from the package failed"
grep -q "LSHMOE_RATIO" "$work/info.txt" || fail "lshmoe_info printed no configuration"
echo "check_package: $(basename "$runtime") $(basename "$dev") $(basename "$python"): checked"
