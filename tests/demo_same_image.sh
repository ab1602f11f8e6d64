#!/usr/bin/env bash
# The demo draws the same image on every device: its checksum with the
# OpenCL device (auto), the cpu back-end and no device at all must agree.
# With a device, PARA_MIXED=device sends every batch of the MIXED escape
# node to it (left alone, the node keeps most pixels on the CPU when the
# device is PoCL on the same cores), and the demo's statistics must show
# that the device computed every pixel: the comparison is device vs CPU.
# Usage: demo_same_image.sh PATH/TO/mandelbrot_demo
set -euo pipefail
demo=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sums=()
for device in auto cpu none; do
  out=$(PARA_DEVICE=$device PARA_MIXED=device "$demo" -W 480 -H 270 -i 300 \
        -o "$dir/$device.png" 2>/dev/null)
  line=$(grep '^image fnv1a' <<<"$out")
  share=$(grep '^escape:' <<<"$out")
  echo "$device: $line; $share"
  [ -s "$dir/$device.png" ] || { echo "no image for $device" >&2; exit 1; }
  # "escape: D of N pixels on the device, in L launches"
  read -r on_dev total < <(awk '{print $2, $4}' <<<"$share")
  if [ "$device" = none ] ||
     { [ "$device" = auto ] && grep -q 'device: none' <<<"$out" &&
       [ "${PARA_REQUIRE_DEVICE:-0}" != 1 ]; }; then
    [ "$on_dev" -eq 0 ] || { echo "$device: pixels on a device" >&2; exit 1; }
  elif [ "$total" -eq 0 ] || [ "$on_dev" -ne "$total" ]; then
    echo "$device: only $on_dev of $total pixels computed on the device" >&2
    exit 1
  fi
  sums+=("$line")
done
[ "${sums[0]}" = "${sums[1]}" ] && [ "${sums[1]}" = "${sums[2]}" ] || {
  echo "the devices drew different images" >&2; exit 1; }
# The PNG itself is the same file whatever the device.
cmp "$dir/auto.png" "$dir/none.png"
