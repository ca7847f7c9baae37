#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 7: lifecycles.  200 tap-ctl create/destroy cycles (1000 with
# VMTEST_LONG=1), each reading the image; 1024 taps allocated at once;
# destroy is refused while the tapdev is mounted, and rmmod while a tap
# exists.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap

T=create-destroy
n=200
[ "$VMTEST_LONG" = 1 ] && n=1000
run truncate -s 16M /data/t7.raw
dd if=/dev/urandom of=/tmp/t7.data bs=4096 count=1 2>/dev/null
run dd if=/tmp/t7.data of=/data/t7.raw bs=4096 seek=5 conv=notrunc
log "$n cycles"
QUIET=1
i=0
minors=
while [ $i -lt $n ]; do
	tap_create -a aio:/data/t7.raw
	dd if="$TAP_DEV" of=/tmp/t7.back bs=4096 count=1 skip=5 iflag=direct \
		2>/dev/null || die "cycle $i: read from $TAP_DEV failed"
	cmp -s /tmp/t7.data /tmp/t7.back || die "cycle $i: read other data"
	tap_destroy "$TAP_PID" "$TAP_MINOR"
	case " $minors " in *" $TAP_MINOR "*) ;; *) minors="$minors $TAP_MINOR" ;; esac
	i=$((i + 1))
	[ $((i % 50)) -eq 0 ] && log "$i cycles"
done
QUIET=0
log "minors used: $minors"
left=$(tap-ctl list)
[ -z "$left" ] || die "taps left after the cycles: $left"
for f in /dev/xen/blktap-2/tapdev*; do
	[ -e "$f" ] && die "device nodes left: $(echo /dev/xen/blktap-2/*)"
done
pass "$T-$n"

T=allocate-1024
# 1024 taps at once through the ioctl (hostile-ring -A: 2048 tap-ctl
# runs would take minutes under TCG), then a few through tap-ctl.
run hostile-ring -A 1024
: >/tmp/t7.alloc
for i in 1 2 3; do
	tap-ctl allocate >>/tmp/t7.alloc || die "tap-ctl allocate failed"
done
cat /tmp/t7.alloc
bad=$(grep -cv '^/dev/xen/blktap-2/tapdev[0-9][0-9]*$' /tmp/t7.alloc)
distinct=$(sort -u /tmp/t7.alloc | wc -l)
for d in $(cat /tmp/t7.alloc); do
	run tap-ctl free -m "${d#/dev/xen/blktap-2/tapdev}"
done
[ "$bad" -eq 0 ] || die "tap-ctl allocate printed $bad lines that are not a tapdev path"
[ "$distinct" -eq 3 ] || die "3 allocations gave $distinct distinct taps"
for f in /dev/xen/blktap-2/blktap*; do
	[ -e "$f" ] && die "ring nodes left after free: $(echo /dev/xen/blktap-2/*)"
done
pass "$T"

T=destroy-mounted-refused
run vhd-util create -n /data/t7.vhd -s 64
tap_create -a vhd:/data/t7.vhd
run mkfs.ext4 -q -F "$TAP_DEV"
mkdir -p /mnt/t7
run mount -t ext4 "$TAP_DEV" /mnt/t7
must_fail tap-ctl destroy -p "$TAP_PID" -m "$TAP_MINOR"
echo "$ERR" | grep -qiE 'in use|busy|mounted' ||
	die "destroy of a mounted tapdev failed, but not saying it is in use: $ERR"
[ "$(echo "$ERR" | wc -l)" -eq 1 ] || die "more than one line of error"
[ -b "$TAP_DEV" ] || die "$TAP_DEV is gone after the refused destroy"
[ "$(tap_pid "$TAP_MINOR")" = "$TAP_PID" ] || die "tapdisk is gone after the refused destroy"
run cp /tmp/t7.data /mnt/t7/after-refusal
run sync
run umount /mnt/t7
run mount -t ext4 -o ro "$TAP_DEV" /mnt/t7
cmp /tmp/t7.data /mnt/t7/after-refusal || die "the file written after the refusal differs"
run umount /mnt/t7
tap_destroy "$TAP_PID" "$TAP_MINOR"
pass "$T"

T=rmmod-refused
tap_create -a aio:/data/t7.raw
must_fail rmmod blktap2
grep -q '^blktap2 ' /proc/modules || die "blktap2 was unloaded with a tap in use"
dd if="$TAP_DEV" of=/tmp/t7.back bs=4096 count=1 skip=5 iflag=direct 2>/dev/null ||
	die "$TAP_DEV does not work after the refused rmmod"
cmp -s /tmp/t7.data /tmp/t7.back || die "read other data after the refused rmmod"
tap_destroy "$TAP_PID" "$TAP_MINOR"
rm -f /data/t7.raw /data/t7.vhd
pass "$T"
