#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 1: a filesystem on a tapdev outlives its tapdisk.  tap-ctl create,
# mkfs.ext4, mount, copy a tree of files in, umount, tap-ctl destroy; create
# again: fsck finds it clean, and every checksum matches.  Once on a dynamic
# VHD (vhd:), once on a raw file (aio:).
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap

src=/tmp/tree
mk_tree $src 100
tree_sums $src >/tmp/sums.src
log "tree of $(wc -l </tmp/sums.src) entries, $(du -sk $src | cut -f1) KiB"
mkdir -p /mnt/fs

# roundtrip TYPE IMAGE
roundtrip() {
	T=fs-roundtrip-$1
	tap_create -a "$1:$2"
	run mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$TAP_DEV"
	run mount -t ext4 "$TAP_DEV" /mnt/fs
	run cp -a $src/. /mnt/fs/
	run umount /mnt/fs
	tap_destroy "$TAP_PID" "$TAP_MINOR"
	echo 3 >/proc/sys/vm/drop_caches

	tap_create -a "$1:$2"
	run fsck.ext4 -fn "$TAP_DEV"
	run mount -t ext4 -o ro "$TAP_DEV" /mnt/fs
	tree_sums /mnt/fs >"/tmp/sums.$1"
	run umount /mnt/fs
	tap_destroy "$TAP_PID" "$TAP_MINOR"
	if ! cmp -s /tmp/sums.src "/tmp/sums.$1"; then
		diff /tmp/sums.src "/tmp/sums.$1" | head -n 20
		die "the files differ after destroy and create"
	fi
	pass "$T"
}

run vhd-util create -n /data/t1.vhd -s 256
roundtrip vhd /data/t1.vhd
run vhd-util check -n /data/t1.vhd

run truncate -s 256M /data/t1.raw
roundtrip aio /data/t1.raw
rm -f /data/t1.vhd /data/t1.raw
