#!/usr/bin/env bash
# The demo draws the same image on every device: its checksum with the
# OpenCL device (auto), the cpu back-end and no device at all must agree.
# Usage: demo_same_image.sh PATH/TO/mandelbrot_demo
set -euo pipefail
demo=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sums=()
for device in auto cpu none; do
  line=$(PARA_DEVICE=$device "$demo" -q -W 480 -H 270 -i 300 \
         -o "$dir/$device.png" 2>/dev/null)
  echo "$device: $line"
  [ -s "$dir/$device.png" ] || { echo "no image for $device" >&2; exit 1; }
  sums+=("$line")
done
[ "${sums[0]}" = "${sums[1]}" ] && [ "${sums[1]}" = "${sums[2]}" ] || {
  echo "the devices drew different images" >&2; exit 1; }
# The PNG itself is the same file whatever the device.
cmp "$dir/auto.png" "$dir/none.png"
