#!/usr/bin/env bash
# make consumer: installs the build in $1 (default build) into a temporary
# prefix, then builds tests/consumer against it with find_package(weft)
# (and installs those programs) and with pkg-config, each against
# libweft.so and libweft.a, and runs all four without LD_LIBRARY_PATH: the
# shared ones find libweft.so.0 through the rpath that docs/guide/build.md
# tells users to link with.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
build=${build%/}
case $build in
  /*) out=$build-consumer ;;
  *) out=$PWD/$build-consumer ;; # build-consumer for the default build
esac
rm -rf "$out"
mkdir -p "$out"
prefix=$out/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libweft.so' | head -n1)")
[ -f "$libdir/libweft.a" ] || { echo "consumer: libweft.a not installed" >&2; exit 1; }
echo "consumer: installed into $prefix (libdir $libdir)"

run() { # name, binary, want-libweft.so (1/0)
  local needs rpath dir found=0
  needs=$(readelf -d "$2" | grep -c 'NEEDED.*libweft\.so' || true)
  if [ "$3" = 1 ] && [ "$needs" = 0 ]; then echo "consumer: $1 is not linked to libweft.so" >&2; exit 1; fi
  if [ "$3" = 0 ] && [ "$needs" != 0 ]; then echo "consumer: $1 needs libweft.so" >&2; exit 1; fi
  if [ "$3" = 1 ]; then # its RUNPATH (or RPATH) must name weft's libdir
    rpath=$(readelf -d "$2" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]$/\2/p')
    IFS=: read -r -a dirs <<<"$rpath"
    for dir in "${dirs[@]}"; do
      [ -d "$dir" ] && [ "$(realpath "$dir")" = "$(realpath "$libdir")" ] && found=1
    done
    if [ "$found" = 0 ]; then echo "consumer: $1 has no rpath to $libdir (rpath: '$rpath')" >&2; exit 1; fi
  fi
  env -u LD_LIBRARY_PATH "$2"
  echo "consumer: $1 ok"
}

# find_package(weft), then installed (where CMake replaces the build
# tree's rpath with the install rpath)
cmake -S tests/consumer -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$out/cmake" -j2
cmake --install "$out/cmake" --prefix "$out/app" >/dev/null
run "find_package, shared" "$out/app/bin/consumer-shared" 1
run "find_package, static" "$out/app/bin/consumer-static" 0

# pkg-config
PKG_CONFIG_PATH=$libdir/pkgconfig make -C tests/consumer O="$out" --no-print-directory
run "pkg-config, shared" "$out/consumer-pc-shared" 1
run "pkg-config, static" "$out/consumer-pc-static" 0
echo "consumer: all four builds ok"
