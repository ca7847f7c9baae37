#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 4: the data reaches the image.  Random data is written through a
# tapdev into a dynamic VHD at scattered places (inside and across its
# 2 MiB blocks, rewrites, the last block); after tap-ctl destroy the host
# reads the image with 'qemu-img convert -f vpc' (run-vm's host check) and
# must find exactly what the guest wrote, holes as zeros.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=image-on-host

mb=64
img=/data/t4.vhd
run vhd-util create -n $img -s $mb
tap_create -a vhd:$img
rm -f /tmp/t4.expected
truncate -s ${mb}M /tmp/t4.expected

# put KIB_OFFSET KIB_COUNT: the same random data to the tapdev and to the
# expected image.
put() {
	dd if=/dev/urandom of=/tmp/t4.chunk bs=1024 count="$2" 2>/dev/null
	dd if=/tmp/t4.chunk of="$TAP_DEV" bs=1024 seek="$1" oflag=direct \
		conv=notrunc 2>/dev/null || die "write of $2 KiB at $1 KiB failed"
	dd if=/tmp/t4.chunk of=/tmp/t4.expected bs=1024 seek="$1" \
		conv=notrunc 2>/dev/null || die "cannot write the expected image"
}
put 0 1024
put 5124 300
put 31744 3072		# 31 MiB to 34 MiB: across two block boundaries
put 512 64		# a rewrite inside the first write
put 16383 2		# 1 KiB on each side of the 16 MiB boundary
put $((mb * 1024 - 1024)) 1024
sum=$(sha256sum </tmp/t4.expected | cut -d' ' -f1)
tap_destroy "$TAP_PID" "$TAP_MINOR"
run vhd-util check -n $img
sync
hostcheck image-on-host vpc-sha256 $img $((mb * 1048576)) "$sum"
