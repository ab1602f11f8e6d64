#!/usr/bin/env bash
# Performance regression guard: the benchmarks against ratio floors, with
# re-measurement near a floor; fails on a crash, a missing row, a failed
# check, or a figure below its floor. The figures, floors and the reasons
# for them are in scripts/perf_guard.py.
#
#   ./scripts/perf-guard.sh [path/to/para-bench] [perf_guard.py options]
#
# Environment: PERF_GUARD_REPEAT (default 3), PERF_GUARD_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=build/bench/para-bench
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  bench=$1
  shift
fi
[ -x "$bench" ] || { echo "perf-guard: $bench not built" >&2; exit 1; }
exec python3 scripts/perf_guard.py --bench "$bench" \
  --repeat "${PERF_GUARD_REPEAT:-3}" --threads "${PERF_GUARD_THREADS:-2}" "$@"
