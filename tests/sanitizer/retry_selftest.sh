#!/usr/bin/env bash
# lsan_tracer_retry.sh reruns a test only after LeakSanitizer's tracer
# crashed, and passes every other failure through: each case below is a
# stand-in program printing what the real one would.
set -uo pipefail
retry=${1:?usage: retry_selftest.sh <path to lsan_tracer_retry.sh>}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
expect() { # expect <exit status> <runs> <case name> <script body>
  local want=$1 want_runs=$2 name=$3
  printf '%s\n' "$4" > "$dir/$name.sh"
  rm -f "$dir/count"
  "$retry" bash "$dir/$name.sh" "$dir/count" > "$dir/$name.out" 2>&1
  local rc=$? runs
  runs=$(wc -l < "$dir/count" 2>/dev/null || echo 0)
  echo "$name: exit $rc after $runs run(s)"
  if [ "$rc" -ne "$want" ] || [ "$runs" -ne "$want_runs" ]; then
    echo "  expected exit $want after $want_runs run(s)" >&2
    fails=$((fails + 1))
  fi
}
tracer='echo "Tracer caught signal 11: addr=0xb90 pc=0x1 sp=0x2"
echo "==1==LeakSanitizer has encountered a fatal error."'
# Tracer crash on the first run, clean second run: passes after two runs.
expect 0 2 tracer_once 'echo run >> "$1"; echo "[  PASSED  ] 3 test(s)."
if [ "$(wc -l < "$1")" -eq 1 ]; then '"$tracer"'; exit 1; fi; exit 0'
# Tracer crash every time: fails.
expect 1 2 tracer_always 'echo run >> "$1"; '"$tracer"'; exit 1'
# A real leak report: fails after one run.
expect 1 1 leak 'echo run >> "$1"
echo "==1==ERROR: LeakSanitizer: detected memory leaks"; exit 1'
# A failed test, even with a tracer crash after it: fails after one run.
expect 1 1 failed_test 'echo run >> "$1"; echo "[  FAILED  ] 1 test(s)."
'"$tracer"'; exit 1'
# A crash in the test itself: its exit status passes through.
expect 139 1 segfault 'echo run >> "$1"; exit 139'
# A passing test runs once.
expect 0 1 pass 'echo run >> "$1"; exit 0'
[ "$fails" -eq 0 ] || { echo "$fails case(s) wrong" >&2; exit 1; }
