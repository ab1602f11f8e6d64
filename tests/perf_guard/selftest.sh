#!/usr/bin/env bash
# The perf guard must fail when it should and pass when it should.
#
#   tests/perf_guard/selftest.sh            stand-in benchmark (a few seconds,
#                                           deterministic; run by ctest)
#   tests/perf_guard/selftest.sh --real B   also para-bench B itself with
#                                           --handicap 2: a runtime twice as
#                                           slow must fail every speed figure
#                                           (run by .ci/run on the quiet machine)
#
# With the stand-in: healthy rows pass; a crash, a non-zero exit, a missing
# row, a failed check, every para variant 2x slower, and a peak RSS over the
# ceiling each fail, named; a first measurement 3x slow that recovers passes
# through re-measurement; w12 is held to its slow floor only where the
# (stand-in) host probe says the host passes cache lines slowly.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
guard="$root/scripts/perf_guard.py"
standin="$here/standin_bench.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect NAME EXIT_WANTED PATTERN MODE [guard args...]
expect() {
  local name=$1 want=$2 pattern=$3 mode=$4
  shift 4
  local out="$tmp/$name.out" rc=0
  STANDIN_MODE=$mode STANDIN_STATE="$tmp/$name.state" \
    python3 "$guard" --bench "$standin" --json "$tmp/$name.json" "$@" \
    >"$out" 2>&1 || rc=$?
  if { [ "$want" = pass ] && [ $rc -ne 0 ]; } ||
     { [ "$want" = fail ] && [ $rc -eq 0 ]; } ||
     ! grep -q -- "$pattern" "$out"; then
    echo "selftest: $name: wanted $want with '$pattern', got exit $rc:" >&2
    sed 's/^/    /' "$out" >&2
    failures=$((failures + 1))
  else
    echo "selftest: $name: $want as it should ($pattern)"
  fi
}

# Every speed figure of a guard result must be below its floor, but those
# named after the file (figures whose spread on a healthy runtime is wider
# than the slowdown, so that a floor cannot tell the two apart).
all_speed_below() {
  python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
# An argument "A|B" spares speed figure A when figure B caught the slowdown.
spared, spared_if = set(), {}
for a in sys.argv[2:]:
    fig, _, alt = a.partition("|")
    if alt:
        spared_if[fig] = alt
    else:
        spared.add(fig)
status = {f["figure"]: f["status"] for f in r["figures"]}
for fig, alt in spared_if.items():
    if status.get(alt) not in (None, "ok"):
        spared.add(fig)
ok = [f["figure"] for f in r["figures"]
      if f["speed"] and f["status"] == "ok" and f["figure"] not in spared]
if ok:
    print("speed figures that did not catch the slowdown: " + "; ".join(ok))
    sys.exit(1)
n = sum(f["speed"] and f["figure"] not in spared for f in r["figures"])
print(f"all {n} speed figures below their floors"
      + (f" (not required of: {'; '.join(sorted(spared))})" if spared else ""))
PY
}

expect healthy pass "perf-guard: ok" ok
expect crash fail "crashed (SIGSEGV)" crash
expect exit1 fail "exited 1" exit1
expect missing fail "w2/para missing" "missing:w2/para"
expect badcheck fail "failed check: w4/dev" "badcheck:w4/dev"
expect rss fail "ABOVE CEILING" "rss:200"
expect flaky pass "measuring again" flaky
expect slow2x fail "BELOW FLOOR" "slow:2"
all_speed_below "$tmp/slow2x.json" || failures=$((failures + 1))
expect handicap fail "BELOW FLOOR" ok --handicap 2
all_speed_below "$tmp/handicap.json" || failures=$((failures + 1))
# w12 on a host that passes cache lines slowly (0.38, under its quiet
# floor): held to its slow floor where the probe says the host is slow,
# and not where it says the host is quiet; twice as slow fails either way.
probe="$here/standin_probe.py"
STANDIN_PINGPONG=500 expect slowhost pass "slow host" w12slow --probe "$probe"
STANDIN_PINGPONG=120 expect quiethost fail "BELOW FLOOR" w12slow \
  --probe "$probe"
STANDIN_PINGPONG=500 expect slowhost2x fail "BELOW FLOOR" w12slow \
  --probe "$probe" --handicap 2

if [ "${1:-}" = --real ]; then
  bench=${2:?"--real needs the para-bench path"}
  rc=0
  python3 "$guard" --bench "$bench" --handicap 2 --json "$tmp/real.json" \
    >"$tmp/real.out" 2>&1 || rc=$?
  cat "$tmp/real.out"
  if [ $rc -eq 0 ] || grep -q "ERROR" "$tmp/real.out"; then
    echo "selftest: real para-bench --handicap 2: wanted a failure on the" \
         "figures alone, got exit $rc" >&2
    failures=$((failures + 1))
  else
    # w3's para / seq is 0.27-0.47 on a healthy runtime over CI runs: its
    # one-thread `seq` takes 2.7 or 5.3 ms as the host's state changes
    # (BENCHMARKS.md, session 10), and para moves with the cost of moving
    # cache lines between the vCPUs (sessions 9 and 10), so twice the work
    # lands on both sides of its floor. The guard still checks that floor;
    # the real handicap is required to show in every other speed figure.
    # w1's efficiency has the same weakness when w1's `seq` lands on a
    # slow vCPU (healthy efficiency 0.94-1.03 in CI on 5841add; under the
    # handicap on baab9f2 three attempts of seven reached 0.67-0.73): the
    # slowdown must then show in w1's other figure, para / ideal, from the
    # same rows (0.645 there, floor 0.68).
    all_speed_below "$tmp/real.json" "w3 para / seq (throughput)" \
      "w1 efficiency (para vs seq)|w1 para / ideal (throughput)" ||
      failures=$((failures + 1))
  fi
fi

if [ $failures -ne 0 ]; then
  echo "selftest: $failures failed" >&2
  exit 1
fi
echo "selftest: all passed"
