#!/usr/bin/env bash
# Set up, build and run the main example: the seed graph of the original
# design (a source fanning out into two branches that merge into one sink).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target seed_graph
"$build/examples/seed_graph" "$@"
