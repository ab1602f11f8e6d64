#!/usr/bin/env bash
# Reliability checks beyond the default test suite (see RELIABILITY.md):
#   1. fuzz: the libFuzzer target tests/fuzz/fuzz_graph.c (clang, ASan+UBSan)
#      for FUZZ_SECONDS (default 60), seeded from the corpus kept in the
#      repository (tests/fuzz/corpus.txt), new inputs kept in build-fuzz/corpus;
#   2. valgrind memcheck on a subset of the tests (default build);
#   3. a longer soak (SOAK_RUNS iterations per runtime, default 20000) and
#      the multi-worker allocation failure sweeps repeated SWEEP_REPEAT times
#      (default 3).
#   ./scripts/reliability.sh            all three
#   ./scripts/reliability.sh fuzz       only the named steps (fuzz, valgrind,
#                                       soak), in the order given
#   ./scripts/reliability.sh fuzz corpus  then merge the new inputs into the
#                                       repository's seeds (corpus.txt)
# Environment: FUZZ_SECONDS, SOAK_RUNS, SWEEP_REPEAT, JOBS (default: cores),
# BUILD_DIR (default build: the default build, made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=${JOBS:-$(nproc)}
build=${BUILD_DIR:-build}
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(fuzz valgrind soak)

default_build() {
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARA_WERROR=ON \
    >/dev/null
  cmake --build "$build" -j "$jobs"
}

fuzz() {
  echo "== fuzz: tests/fuzz/fuzz_graph for ${FUZZ_SECONDS:-60} s (ASan+UBSan)"
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPARA_BUILD_FUZZ=ON \
    -DPARA_SANITIZE=address,undefined -DPARA_WERROR=ON \
    -DPARA_BUILD_TESTS=OFF -DPARA_BUILD_BENCH=OFF -DPARA_BUILD_EXAMPLES=OFF \
    -DPARA_WITH_OPENCL=OFF >/dev/null
  cmake --build build-fuzz -j "$jobs" --target fuzz_graph
  mkdir -p build-fuzz/corpus
  # The repository's seeds, one file per line of tests/fuzz/corpus.txt.
  rm -rf build-fuzz/seeds && mkdir -p build-fuzz/seeds
  python3 -c 'import sys
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        name, hexdata = line.split()
        open(sys.argv[2] + "/" + name, "wb").write(bytes.fromhex(hexdata))
' tests/fuzz/corpus.txt build-fuzz/seeds
  echo "seeds: $(ls build-fuzz/seeds | wc -l) inputs from tests/fuzz/corpus.txt"
  # A crash, a sanitizer report, a leak or a 10 s hang stops the fuzzer
  # with a non-zero status and leaves crash-*/timeout-* files behind.
  PARA_FUZZ_STATS=1 UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ./build-fuzz/tests/fuzz/fuzz_graph -max_total_time="${FUZZ_SECONDS:-60}" \
    -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/ build-fuzz/corpus build-fuzz/seeds
}

# Merge what fuzzing found (build-fuzz/corpus) into the repository's seeds
# and rewrite tests/fuzz/corpus.txt: the hand-written seeds (seed_*) stay
# first, then the inputs libFuzzer keeps for coverage.
corpus() {
  echo "== corpus: merge build-fuzz/corpus into tests/fuzz/corpus.txt"
  [ -x build-fuzz/tests/fuzz/fuzz_graph ] && [ -d build-fuzz/seeds ] || {
    echo "run the fuzz step first" >&2; exit 1; }
  rm -rf build-fuzz/merged && mkdir -p build-fuzz/merged
  cp build-fuzz/seeds/seed_* build-fuzz/merged/
  ./build-fuzz/tests/fuzz/fuzz_graph -merge=1 build-fuzz/merged \
    build-fuzz/seeds build-fuzz/corpus
  python3 -c 'import os, sys
d, out = sys.argv[1], sys.argv[2]
head = [l for l in open(out) if l.startswith("#")]
names = sorted(os.listdir(d), key=lambda n: (not n.startswith("seed_"), n))
with open(out, "w") as f:
    f.writelines(head)
    for n in names:
        name = n if n.startswith("seed_") else "cov_" + n[:12]
        f.write(name + " " + open(os.path.join(d, n), "rb").read().hex() + "\n")
print(len(names), "inputs in", out)
' build-fuzz/merged tests/fuzz/corpus.txt
}

valgrind_subset() {
  echo "== valgrind memcheck: a subset of the tests"
  default_build
  # Valgrind serialises the threads: time bounds inside the tests scale.
  local t
  for t in graph errors pipeline misuse node_failure cancel run soak; do
    echo "-- $t"
    PARA_TEST_TIMEOUT_MULT=20 PARA_SOAK_RUNS=400 \
      valgrind -q --error-exitcode=1 --leak-check=full \
      --errors-for-leak-kinds=definite --show-leak-kinds=definite \
      --fair-sched=yes "$build/tests/test_$t" >"$build/valgrind-$t.log" 2>&1 \
      || { cat "$build/valgrind-$t.log"; echo "valgrind: $t failed" >&2; exit 1; }
    tail -n 1 "$build/valgrind-$t.log"
  done
}

soak() {
  echo "== soak: ${SOAK_RUNS:-20000} iterations per runtime; alloc sweeps x${SWEEP_REPEAT:-3}"
  default_build
  PARA_SOAK_RUNS=${SOAK_RUNS:-20000} "$build/tests/test_soak"
  PARA_ALLOC_SWEEP_REPEAT=${SWEEP_REPEAT:-3} "$build/tests/test_alloc_faults"
}

for s in "${steps[@]}"; do
  case "$s" in
    fuzz) fuzz ;;
    corpus) corpus ;;
    valgrind) valgrind_subset ;;
    soak) soak ;;
    *) echo "reliability.sh: unknown step '$s' (fuzz, corpus, valgrind, soak)" >&2
       exit 2 ;;
  esac
done
echo "== reliability checks passed"
