#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 6: a hostile ring client.  hostile-ring (tests/vm/hostile-ring.c)
# maps a ring and answers 10^5 times (3 x 10^5 with VMTEST_LONG=1) with
# random and duplicate ids, bad statuses and bad counts while tapdevN is
# busy.  The kernel stays
# healthy: nothing in dmesg, the taps can be removed, and a new tap
# made by tap-ctl works.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=hostile-ring

command -v hostile-ring >/dev/null || die "hostile-ring is not in the guest"
n=100000
[ "$VMTEST_LONG" = 1 ] && n=300000
dmesg_mark
run hostile-ring -n $n
bad=$(dmesg_bad_since)
[ -z "$bad" ] || die "kernel log: $(echo "$bad" | head -n 1)"
[ -c /dev/xen/blktap-2/control ] || die "the control node is gone"
pass "$T"

T=hostile-ring-then-tap
run truncate -s 32M /data/t6.raw
tap_create -a aio:/data/t6.raw
dd if=/dev/urandom of=/tmp/t6.data bs=1M count=4 2>/dev/null
run dd if=/tmp/t6.data of="$TAP_DEV" bs=1M count=4 seek=2 oflag=direct
run dd if="$TAP_DEV" of=/tmp/t6.back bs=1M count=4 skip=2 iflag=direct
cmp /tmp/t6.data /tmp/t6.back || die "a new tap reads back other data"
tap_destroy "$TAP_PID" "$TAP_MINOR"
bad=$(dmesg_bad_since)
[ -z "$bad" ] || die "kernel log: $(echo "$bad" | head -n 1)"
rm -f /data/t6.raw
pass "$T"
