#!/usr/bin/env bash
# Set up, build and run the main demo: a mixed CPU/device pipeline that
# renders the Mandelbrot set into mandelbrot.png (escape counts on the
# OpenCL device that PARA_DEVICE picks, PoCL by default on a machine without
# a GPU; colours on the CPU; rows streamed in order into libpng), then
# prints the runtime's statistics. Arguments go to the demo (see -h).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target mandelbrot_demo
"$build/examples/mandelbrot_demo" "$@"
