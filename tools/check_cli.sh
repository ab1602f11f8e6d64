#!/usr/bin/env bash
# The tools' command line: tools/check_cli.sh PARA_INFO PARA_TRACE VERSION
# --help prints the usage on stdout and exits 0, --version prints
# "<tool> VERSION" and exits 0, an unknown option prints the usage on
# stderr and exits 2.
set -uo pipefail
info=$1 trace=$2 version=$3
fail=0
check() { # name expected-rc stdout-regex stderr-regex cmd...
  local name=$1 want=$2 out_re=$3 err_re=$4
  shift 4
  local out err rc
  out=$("$@" 2>/tmp/check_cli.$$) && rc=0 || rc=$?
  err=$(cat /tmp/check_cli.$$)
  rm -f /tmp/check_cli.$$
  if [ "$rc" -ne "$want" ] || ! grep -qE "$out_re" <<<"$out" ||
     ! grep -qE "$err_re" <<<"$err"; then
    echo "FAIL $name: rc $rc (want $want)"
    echo "  stdout: $out"
    echo "  stderr: $err"
    fail=1
  else
    echo "ok   $name"
  fi
}
v=${version//./\\.}
for t in "$info" "$trace"; do
  n=$(basename "$t")
  check "$n --help" 0 "^usage: $n " '^$' "$t" --help
  check "$n --version" 0 "^$n $v( |\$)" '^$' "$t" --version
  check "$n --bogus" 2 '^$' "^usage: $n " "$t" --bogus
done
exit $fail
