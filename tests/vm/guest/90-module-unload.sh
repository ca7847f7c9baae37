#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# After all the tests: tap-ctl check and major agree with the kernel; no
# tap is left, the module unloads (nothing holds it), tap-ctl check then
# says so, and the module loads again and works.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=tap-ctl-check-major
run tap-ctl check
major=$(tap-ctl major) || die "tap-ctl major failed"
run truncate -s 16M /data/t9.raw
tap_create -a aio:/data/t9.raw
# stat prints the major in hex.
real=$(printf '%d' "0x$(stat -c %t "$TAP_DEV")")
[ "$major" = "$real" ] ||
	die "tap-ctl major says $major, $TAP_DEV has major $real"
tap_destroy "$TAP_PID" "$TAP_MINOR"
pass "$T"

T=module-unload
left=$(tap-ctl list)
[ -z "$left" ] || die "taps left: $left"
run rmmod blktap2
grep -q '^blktap2 ' /proc/modules && die "blktap2 is still loaded"
[ ! -e /dev/xen/blktap-2/control ] || die "the control node outlived the module"
must_fail tap-ctl check
# shellcheck disable=SC2086 # one word per parameter
run insmod "/lib/modules/$(uname -r)/blktap2.ko" $VMTEST_MODPARAMS
wait_until 5 test -c /dev/xen/blktap-2/control ||
	die "no control node after loading again"
tap_create -a aio:/data/t9.raw
run dd if=/dev/zero of="$TAP_DEV" bs=64k count=4 oflag=direct
tap_destroy "$TAP_PID" "$TAP_MINOR"
rm -f /data/t9.raw
pass "$T"
