#!/usr/bin/env bash
# Install the Debian packages para needs, when they are missing. Safe to run
# any number of times. Runs apt-get as root, or through sudo when available.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libhwloc-dev hwloc
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  libcmocka-dev
  libpng-dev
  zlib1g-dev
  clang-format
  python3
  clang libclang-rt-14-dev valgrind
  libopenmpi-dev openmpi-bin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo" >&2; exit 1; }
  as_root=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
