#!/usr/bin/env bash
# Build the Debian package: para_<version>_<arch>.deb in BUILD_DIR (default
# build-deb), with libpara.so, the headers, CMake and pkg-config files,
# para-info and para-trace under /usr. Prints the package's control fields.
#   ./scripts/make-deb.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-deb}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr -DPARA_SHARED=ON -DPARA_BUILD_TESTS=OFF \
  -DPARA_BUILD_BENCH=OFF -DPARA_BUILD_EXAMPLES=OFF "$@" >/dev/null
cmake --build "$build" -j "$jobs" >/dev/null
(cd "$build" && cpack -G DEB >cpack.log 2>&1) || { cat "$build/cpack.log"; exit 1; }
deb=$(ls "$build"/para_*.deb)
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends
echo "$deb"
