#!/usr/bin/env bash
# The shared library exports the public API and nothing else:
#   tests/exports.sh build/libpara.so MAJOR.MINOR HEADER...
# Every function declared PARA_API in the given public headers must be a
# defined dynamic symbol of the library, and every defined dynamic symbol
# must be one of them (internal para__ functions stay hidden). The soname
# must be libpara.so.<MAJOR.MINOR>.
set -euo pipefail
lib=$1 soversion=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations span lines: join the headers, then take the first
# identifier followed by '(' after each PARA_API (export.h defines it).
for h in "$@"; do
  [ "$(basename "$h")" = export.h ] || cat "$h"
done | tr '\n' ' ' |
  grep -oP 'PARA_API[^;(]*?\K\b\w+(?=\s*\()' | sort -u >"$tmp/api"
nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u >"$tmp/exported"

n_api=$(wc -l <"$tmp/api")
if [ "$n_api" -lt 10 ]; then
  echo "exports: only $n_api PARA_API functions found in $*" >&2
  exit 1
fi
if ! diff -u "$tmp/api" "$tmp/exported" >"$tmp/diff"; then
  echo "exports: PARA_API declarations (-) and symbols of $lib (+) differ:" >&2
  grep -E '^[-+][^-+]' "$tmp/diff" >&2
  exit 1
fi
echo "exports: $n_api PARA_API functions, exactly the exported symbols"

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$soname" != "libpara.so.$soversion" ]; then
  echo "exports: soname '$soname', expected libpara.so.$soversion" >&2
  exit 1
fi
echo "exports: soname $soname"
