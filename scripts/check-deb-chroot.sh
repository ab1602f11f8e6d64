#!/usr/bin/env bash
# Install the .deb on a fresh Debian 12 (a debootstrap chroot) as a user
# would, run para-info from it, build examples/ against it with CMake and
# with pkg-config, run them, and remove the package. Optional (not in CI):
# needs root, debootstrap and Debian's package mirror.
#
#   ./scripts/check-deb-chroot.sh [path/to/para_*.deb]
#
# Without an argument, builds the package with scripts/make-deb.sh. The
# fresh system is made once (debootstrap --variant=minbase bookworm, about
# a minute) into DEB_CHROOT_CACHE (default /var/tmp/para-bookworm) and
# copied for each run, so every run starts from the same clean system.
# Environment: DEB_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "check-deb-chroot: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  echo "check-deb-chroot: needs debootstrap (apt-get install debootstrap)" >&2
  exit 1
}
deb=${1:-}
if [ -z "$deb" ]; then
  ./scripts/make-deb.sh
  deb=$(ls build-deb/para_*.deb)
fi
cache=${DEB_CHROOT_CACHE:-/var/tmp/para-bookworm}
mirror=${DEB_MIRROR:-http://deb.debian.org/debian}
if [ ! -x "$cache/bin/bash" ]; then
  echo "== debootstrap bookworm into $cache"
  rm -rf "$cache.partial"
  debootstrap --variant=minbase bookworm "$cache.partial" "$mirror" >/dev/null
  mv "$cache.partial" "$cache"
fi

root=$(mktemp -d /var/tmp/para-chroot.XXXXXX)
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" || umount -l "${mounted[i]}" || true
  done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
cp -a "$cache/." "$root/"
for m in proc sys dev dev/pts; do
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sysfs "$root/sys" ;;
    dev) mount --bind /dev "$root/dev" ;;
    dev/pts) mount -t devpts devpts "$root/dev/pts" ;;
  esac
  mounted+=("$root/$m")
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/tmp/para/examples"
cp "$deb" "$root/tmp/para/"
cp examples/*.c examples/*.h examples/CMakeLists.txt "$root/tmp/para/examples/"

chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  DEBIAN_FRONTEND=noninteractive /bin/bash -euo pipefail -c '
cd /tmp/para
echo "== apt-get install ./$(ls para_*.deb) (fresh Debian $(cat /etc/debian_version))"
apt-get update -qq
apt-get install -y -qq ./para_*.deb >/dev/null
dpkg-query -W -f="\${Package} \${Version}: Depends: \${Depends}\n" para
echo "== para-info from the package"
para-info --version
para-trace --version
para-info
echo "== a program against the package: CMake and pkg-config"
apt-get install -y -qq --no-install-recommends gcc libc6-dev make cmake \
  pkg-config libpng-dev >/dev/null
cmake -S examples -B ex -DCMAKE_BUILD_TYPE=Release | grep "^-- para "
cmake --build ex >/dev/null
ex/seed_graph 100000 | tail -n 1
a=$(PARA_DEVICE=auto ex/mandelbrot_demo -q -W 320 -H 180 -o a.png)
n=$(PARA_DEVICE=none ex/mandelbrot_demo -q -W 320 -H 180 -o n.png)
echo "demo: auto $a, none $n"
[ "$a" = "$n" ]
echo "pkg-config --cflags --libs para: $(pkg-config --cflags --libs para)"
cc -O2 -o sg examples/seed_graph.c $(pkg-config --cflags --libs para)
./sg 100000 | tail -n 1
cc -O2 -o sgs examples/seed_graph.c $(pkg-config --static --cflags --libs para)
./sgs 1000 >/dev/null
echo "== apt-get remove para"
apt-get remove -y -qq para >/dev/null
if dpkg-query -W -f="\${Status}" para 2>/dev/null | grep -q " installed"; then
  echo "para is still installed" >&2
  exit 1
fi
[ ! -e /usr/bin/para-info ]
[ -z "$(ls /usr/lib/*/libpara.so* 2>/dev/null)" ]
echo "removed"
'
echo "check-deb-chroot: OK"
