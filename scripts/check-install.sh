#!/usr/bin/env bash
# Install para into a temporary prefix and use it as another project would:
# build examples/ out of tree once with CMake (find_package(para 0.2
# REQUIRED), para::para) and once with `cc ... $(pkg-config --cflags --libs
# para)`, and run them. The prefix is moved after the install, so this also
# checks that paraConfig.cmake and para.pc are relocatable.
#
#   ./scripts/check-install.sh [shared|static|both]     (default: shared)
#
# shared: installs the build in BUILD_DIR (default build, configured and
#         built here if missing) with `cmake --install --prefix`.
# static: configures and builds -DPARA_SHARED=OFF (library and tools only)
#         in BUILD_DIR-static, then the same checks, plus `pkg-config
#         --static`.
# Environment: BUILD_DIR, JOBS (default: cores), KEEP=1 keeps the temporary
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
mode=${1:-shared}
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cc=${CC:-cc}
version=$(sed -n 's/^#define PARA_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' \
  include/para/version.h | paste -sd.)
soversion=${version%.*}

work=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then
  echo "check-install: keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi
fail() { echo "check-install: $*" >&2; exit 1; }

run_examples() { # label dir-with-binaries
  local label=$1 dir=$2
  echo "-- $label: seed_graph"
  "$dir/seed_graph" 200000 | tail -n 3
  if [ -x "$dir/mandelbrot_demo" ]; then
    echo "-- $label: mandelbrot_demo"
    local sum_none sum_auto
    sum_none=$(PARA_DEVICE=none "$dir/mandelbrot_demo" -q -W 320 -H 180 \
      -i 200 -o "$dir/none.png")
    sum_auto=$(PARA_DEVICE=auto "$dir/mandelbrot_demo" -q -W 320 -H 180 \
      -i 200 -o "$dir/auto.png")
    echo "   none: $sum_none"
    echo "   auto: $sum_auto"
    [ "$sum_none" = "$sum_auto" ] || fail "$label: the demo's images differ"
    [ -s "$dir/auto.png" ] || fail "$label: no image"
    echo "$sum_none" >"$dir/checksum"
  fi
  # Records, owned items and a reduction on the installed headers (CMake
  # build only: log_stats needs examples/loggen.h beside it).
  if [ -x "$dir/log_stats" ]; then
    echo "-- $label: log_stats"
    "$dir/log_stats" 50000 | tail -n 1 | grep -q "identical" ||
      fail "$label: log_stats differs from its loop"
  fi
}

check_prefix() { # kind(shared|static) build-dir
  local kind=$1 bdir=$2
  local p=$work/$kind/prefix
  echo "== $kind: cmake --install $bdir --prefix (then moved)"
  cmake --install "$bdir" --prefix "$work/$kind/first" >/dev/null
  mv "$work/$kind/first" "$p"
  local libdir
  libdir=$(dirname "$(find "$p" -name para.pc -path '*/pkgconfig/*')")
  libdir=${libdir%/pkgconfig}

  # What is installed: the API headers only, the library, tools, config.
  for f in include/para.h include/para/graph.h include/para/export.h \
           bin/para-info bin/para-trace; do
    [ -e "$p/$f" ] || fail "$kind: $f not installed"
  done
  [ -e "$libdir/cmake/para/paraConfig.cmake" ] || fail "no paraConfig.cmake"
  [ -e "$libdir/cmake/para/paraConfigVersion.cmake" ] ||
    fail "no paraConfigVersion.cmake"
  if [ "$kind" = shared ]; then
    [ -e "$libdir/libpara.so.$soversion" ] || fail "no libpara.so.$soversion"
    [ ! -e "$libdir/libpara.a" ] || fail "shared install has libpara.a"
    "$src/tests/exports.sh" "$libdir/libpara.so" "$soversion" \
      "$p"/include/para/*.h
  else
    [ -e "$libdir/libpara.a" ] || fail "no libpara.a"
    [ -z "$(find "$p" -name 'libpara.so*')" ] || fail "static has libpara.so"
  fi
  if find "$p" -name '*.h' | grep -qvE '/include/(para\.h|para/[a-z_]+\.h)$'; then
    fail "$kind: internal headers installed: $(find "$p" -name '*.h')"
  fi
  "$p/bin/para-info" --version
  "$p/bin/para-info" --version | grep -q "^para-info $version " ||
    fail "para-info --version"
  "$p/bin/para-trace" --version | grep -q "^para-trace $version" ||
    fail "para-trace --version"
  "$p/bin/para-info" --no-launch | head -n 4

  echo "== $kind: examples/ with CMake, find_package(para $soversion REQUIRED)"
  cmake -S "$src/examples" -B "$work/$kind/ex-cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$p" \
    >"$work/$kind/ex-cmake.log" || { cat "$work/$kind/ex-cmake.log"; fail "configure"; }
  grep -q "para $version from $libdir/cmake/para" "$work/$kind/ex-cmake.log" ||
    { cat "$work/$kind/ex-cmake.log"; fail "$kind: not the para of $p"; }
  cmake --build "$work/$kind/ex-cmake" -j "$jobs" >/dev/null
  if [ "$kind" = shared ]; then
    readelf -d "$work/$kind/ex-cmake/seed_graph" |
      grep -q "NEEDED.*libpara.so.$soversion" || fail "seed_graph: no libpara"
  fi
  run_examples "cmake" "$work/$kind/ex-cmake"

  echo "== $kind: examples/ with cc \$(pkg-config --cflags --libs para)"
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  [ "$(pkg-config --modversion para)" = "$version" ] ||
    fail "pkg-config --modversion para"
  local d=$work/$kind/ex-pc
  mkdir -p "$d"
  echo "   pkg-config --libs para: $(pkg-config --libs para)"
  # shellcheck disable=SC2046 # word splitting of pkg-config's output
  $cc -O2 -o "$d/seed_graph" "$src/examples/seed_graph.c" \
    $(pkg-config --cflags --libs para)
  if pkg-config --exists libpng; then
    # shellcheck disable=SC2046
    $cc -O2 -o "$d/mandelbrot_demo" "$src/examples/mandelbrot_demo.c" \
      $(pkg-config --cflags --libs para libpng)
  fi
  echo "   pkg-config --static --libs para: $(pkg-config --static --libs para)"
  # shellcheck disable=SC2046
  $cc -O2 -o "$d/seed_graph_static_flags" "$src/examples/seed_graph.c" \
    $(pkg-config --static --cflags --libs para)
  # A caller that hides its own symbols, even around para.h, still links:
  # PARA_API declares default visibility.
  {
    printf '#include <%s>\n' errno.h inttypes.h stdint.h stdio.h stdlib.h \
      string.h time.h
    printf '#pragma GCC visibility push(hidden)\n#include <para.h>\n'
    printf '#pragma GCC visibility pop\n#include "seed_graph.c"\n'
  } >"$d/hidden.c"
  # shellcheck disable=SC2046
  $cc -O2 -fvisibility=hidden -I"$src/examples" -o "$d/seed_graph_hidden" \
    "$d/hidden.c" $(pkg-config --cflags --libs para)
  LD_LIBRARY_PATH=$libdir "$d/seed_graph_hidden" 1000 >/dev/null
  LD_LIBRARY_PATH=$libdir run_examples "pkg-config" "$d"
  LD_LIBRARY_PATH=$libdir "$d/seed_graph_static_flags" 1000 >/dev/null
  unset PKG_CONFIG_PATH
  if [ -f "$d/checksum" ]; then
    cmp -s "$d/checksum" "$work/$kind/ex-cmake/checksum" ||
      fail "$kind: the CMake and pkg-config demos drew different images"
  fi
}

case $mode in
  shared | both)
    if [ ! -f "$build/CMakeCache.txt" ]; then
      cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    fi
    cmake --build "$build" -j "$jobs" >/dev/null
    grep -q '^PARA_SHARED:BOOL=ON' "$build/CMakeCache.txt" ||
      fail "$build is not a PARA_SHARED=ON build"
    check_prefix shared "$build"
    ;;&
  static | both)
    sbuild=${build}-static
    cmake -S . -B "$sbuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARA_SHARED=OFF \
      -DPARA_BUILD_TESTS=OFF -DPARA_BUILD_BENCH=OFF -DPARA_BUILD_EXAMPLES=OFF \
      >/dev/null
    cmake --build "$sbuild" -j "$jobs" >/dev/null
    check_prefix static "$sbuild"
    ;;
  shared) ;;
  *) fail "usage: $0 [shared|static|both]" ;;
esac
echo "check-install: OK ($mode)"
