#!/usr/bin/env bash
# make consumer: installs the build in $1 (default build) into a temporary
# prefix, then builds tests/consumer against it with find_package(weft) and
# with pkg-config, each against libweft.so and libweft.a, and runs all four.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=$PWD/build-consumer
rm -rf "$out"
mkdir -p "$out"
prefix=$out/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libweft.so' | head -n1)")
[ -f "$libdir/libweft.a" ] || { echo "consumer: libweft.a not installed" >&2; exit 1; }
echo "consumer: installed into $prefix (libdir $libdir)"

run() { # name, binary, want-libweft.so (1/0)
  local needs
  needs=$(readelf -d "$2" | grep -c 'NEEDED.*libweft\.so' || true)
  if [ "$3" = 1 ] && [ "$needs" = 0 ]; then echo "consumer: $1 is not linked to libweft.so" >&2; exit 1; fi
  if [ "$3" = 0 ] && [ "$needs" != 0 ]; then echo "consumer: $1 needs libweft.so" >&2; exit 1; fi
  if [ "$3" = 1 ]; then
    LD_LIBRARY_PATH=$libdir "$2"
  else
    env -u LD_LIBRARY_PATH "$2"
  fi
  echo "consumer: $1 ok"
}

# find_package(weft)
cmake -S tests/consumer -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$out/cmake" -j2
run "find_package, shared" "$out/cmake/consumer-shared" 1
run "find_package, static" "$out/cmake/consumer-static" 0

# pkg-config
PKG_CONFIG_PATH=$libdir/pkgconfig make -C tests/consumer O="$out" --no-print-directory
run "pkg-config, shared" "$out/consumer-pc-shared" 1
run "pkg-config, static" "$out/consumer-pc-static" 0
echo "consumer: all four builds ok"
