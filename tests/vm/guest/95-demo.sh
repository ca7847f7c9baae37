#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job, as 'make demo' shows it (and as a test in make check-vm):
# create a VHD, attach it as a tapdev, mkfs, mount, write; snapshot it
# live (fsfreeze, tap-ctl pause, vhd-util snapshot, tap-ctl unpause -a onto
# the child) while a writer keeps going; list, stats, destroy; then prove
# it: the chain passes vhd-util check, the child holds every file, and
# the parent alone holds exactly the files from before the snapshot.
#
# Its transcript goes to the console as "VMTEST SHOW" lines, which
# run-vm prints with -s (make demo) and otherwise only logs.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap

# say TEXT: a line of explanation.
say() {
	echo "VMTEST SHOW"
	echo "VMTEST SHOW ## $*"
}

# step CMD...: show the command and its output; die if it fails.
step() {
	local rc
	echo "VMTEST SHOW + $*"
	"$@" >/tmp/vmtest/step.out 2>&1
	rc=$?
	sed 's/^/VMTEST SHOW     /' /tmp/vmtest/step.out
	[ $rc = 0 ] || die "failed (exit $rc): $*"
}

# show TEXT: a line of output that is not a command's.
show() {
	echo "VMTEST SHOW     $*"
}

T=demo
dir=/data/demo
mnt=/mnt/demo
rm -rf $dir
mkdir -p $dir $mnt

say "Linux $(uname -r) in QEMU, blktap2.ko loaded: its control device, and the block major"
step ls /dev/xen/blktap-2
step tap-ctl major

say "A 256 MiB dynamic VHD: only metadata so far"
step vhd-util create -n $dir/base.vhd -s 256
step ls -ls $dir

say "tap-ctl create = allocate a tap + spawn a tapdisk + attach + open the image"
echo "VMTEST SHOW + tap-ctl create -a vhd:$dir/base.vhd"
dev=$(tap-ctl create -a vhd:$dir/base.vhd) || die "tap-ctl create failed"
show "$dev"
case $dev in
/dev/xen/blktap-2/tapdev[0-9]*) ;;
*) die "tap-ctl create printed '$dev'" ;;
esac
minor=${dev#/dev/xen/blktap-2/tapdev}
pid=$(tap_pid "$minor")
[ -n "$pid" ] || die "tap-ctl list shows no tapdisk for minor $minor"
VT_TAPS="$VT_TAPS $pid:$minor"
step tap-ctl list
step ls -l "$dev"
step cat /sys/class/blktap2/blktap"$minor"/name /sys/class/blktap2/blktap"$minor"/task

say "It is an ordinary disk: make a filesystem, mount it, write files"
step mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
step mount -t ext4 "$dev" $mnt
mk_tree $mnt/before 40
step sync
step df -h $mnt
tree_sums $mnt/before >/tmp/vmtest/sums.before

say "A live snapshot while a writer keeps writing: freeze the filesystem, pause tapdisk, snapshot the VHD, unpause onto the child, thaw"
dd if=/dev/urandom of=/tmp/vmtest/during bs=1M count=24 2>/dev/null
(
	i=0
	while [ $i -lt 24 ]; do
		dd if=/tmp/vmtest/during of=$mnt/during bs=1M count=1 \
			skip=$i seek=$i conv=notrunc,fsync 2>/dev/null || exit 1
		i=$((i + 1))
		sleep 0.2
	done
	sync
	cmp /tmp/vmtest/during $mnt/during
) &
writer=$!
BG_PIDS="$BG_PIDS $writer"
sleep 1
step fsfreeze --freeze $mnt
step tap-ctl pause -p "$pid" -m "$minor"
step tap-ctl list -m "$minor"
step vhd-util snapshot -n $dir/snap.vhd -p $dir/base.vhd
step tap-ctl unpause -p "$pid" -m "$minor" -a vhd:$dir/snap.vhd
step fsfreeze --unfreeze $mnt
step tap-ctl list -m "$minor"
wait_pid "$writer" 300 || die "the writer failed across the snapshot"
show "the writer finished: $(du -k $mnt/during | cut -f1) KiB in $mnt/during"
mk_tree $mnt/after 20
step sync

say "New writes go to the child: its blocks, and tapdisk's counters"
step vhd-util query -n $dir/snap.vhd -p
step ls -ls $dir
step tap-ctl stats -p "$pid" -m "$minor"

say "Unmount and destroy = close + detach + free; the tapdev is gone"
tree_sums $mnt >/tmp/vmtest/sums.all
step umount $mnt
step tap-ctl destroy -p "$pid" -m "$minor"
tap_forget "$pid" "$minor"
step tap-ctl list
[ ! -e "$dev" ] || wait_until 5 test ! -e "$dev" || die "$dev still exists"
pass demo-main-job

say "The chain is sound"
step vhd-util check -n $dir/snap.vhd -p
step vhd-util check -n $dir/base.vhd
pass demo-chain-check

say "The child, attached again read-only, holds every file"
T=demo-child-holds-all
echo "VMTEST SHOW + tap-ctl create -R -a vhd:$dir/snap.vhd"
QUIET=1 tap_create -R -a vhd:$dir/snap.vhd
show "$TAP_DEV"
step fsck.ext4 -fn "$TAP_DEV"
step mount -t ext4 -o ro "$TAP_DEV" $mnt
tree_sums $mnt >/tmp/vmtest/sums.child
step umount $mnt
QUIET=1 tap_destroy "$TAP_PID" "$TAP_MINOR"
if cmp -s /tmp/vmtest/sums.all /tmp/vmtest/sums.child; then
	show "$(wc -l </tmp/vmtest/sums.all) files, every checksum matches"
	pass $T
else
	diff /tmp/vmtest/sums.all /tmp/vmtest/sums.child | head -n 20
	fail $T "the child's files differ from what was written"
fi

say "The parent alone is the filesystem as it was frozen: 'before' complete, nothing of 'after'"
T=demo-parent-is-point-in-time
echo "VMTEST SHOW + tap-ctl create -R -a vhd:$dir/base.vhd"
QUIET=1 tap_create -R -a vhd:$dir/base.vhd
show "$TAP_DEV"
step fsck.ext4 -fn "$TAP_DEV"
step mount -t ext4 -o ro "$TAP_DEV" $mnt
step ls $mnt
tree_sums $mnt/before >/tmp/vmtest/sums.parent
after=0
[ -e $mnt/after ] && after=1
step umount $mnt
QUIET=1 tap_destroy "$TAP_PID" "$TAP_MINOR"
if ! cmp -s /tmp/vmtest/sums.before /tmp/vmtest/sums.parent; then
	diff /tmp/vmtest/sums.before /tmp/vmtest/sums.parent | head -n 20
	fail $T "the parent's 'before' files differ"
elif [ $after = 1 ]; then
	fail $T "the parent has 'after', written after the snapshot"
else
	show "'before' matches, 'after' is absent"
	pass $T
fi
rm -rf $dir
