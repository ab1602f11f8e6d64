#!/usr/bin/env bash
# Set up, build and run the main demo: a mixed CPU/device pipeline that
# renders the Mandelbrot set into mandelbrot.png (escape counts on the
# OpenCL device that PARA_DEVICE picks, PoCL by default on a machine without
# a GPU; colours on the CPU; rows streamed in order into libpng), then
# prints the runtime's statistics; writes the run's event trace
# (mandelbrot-trace.json, for Perfetto) and its timeline as SVG
# (mandelbrot-trace.svg). Arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target mandelbrot_demo para-trace
"$build/examples/mandelbrot_demo" -t mandelbrot-trace.json "$@"
# The timeline of the run: one lane per worker and per device.
"$build/tools/para-trace" -o mandelbrot-trace.svg mandelbrot-trace.json
echo "wrote mandelbrot-trace.svg (open it in any browser or image viewer)"
