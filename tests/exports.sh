#!/usr/bin/env bash
# The shared library exports the public API and nothing else:
#   tests/exports.sh build/libpara.so include [major.minor]
# Every function declared PARA_API in the public headers (but mpi.h, whose
# functions live in the separate library para_mpi) must be a defined
# dynamic symbol of the library, and every defined dynamic symbol must be
# one of them (internal para__ functions stay hidden). With major.minor,
# the soname must be libpara.so.<major.minor>.
set -euo pipefail
lib=$1 inc=$2 soversion=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations span lines: join each header, then take the first
# identifier followed by '(' after each PARA_API (export.h defines it).
find "$inc" -name '*.h' ! -name export.h ! -name mpi.h -print0 | xargs -0 cat | tr '\n' ' ' |
  grep -oP 'PARA_API[^;(]*?\K\b\w+(?=\s*\()' | sort -u >"$tmp/api"
nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u >"$tmp/exported"

n_api=$(wc -l <"$tmp/api")
if [ "$n_api" -lt 10 ]; then
  echo "exports: only $n_api PARA_API functions found in $inc" >&2
  exit 1
fi
if ! diff -u "$tmp/api" "$tmp/exported" >"$tmp/diff"; then
  echo "exports: PARA_API declarations (-) and symbols of $lib (+) differ:" >&2
  grep -E '^[-+][^-+]' "$tmp/diff" >&2
  exit 1
fi
echo "exports: $n_api PARA_API functions, exactly the exported symbols"

if [ -n "$soversion" ]; then
  soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
  if [ "$soname" != "libpara.so.$soversion" ]; then
    echo "exports: soname '$soname', expected libpara.so.$soversion" >&2
    exit 1
  fi
  echo "exports: soname $soname"
fi
