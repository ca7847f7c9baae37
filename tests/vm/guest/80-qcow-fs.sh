#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test: a filesystem on a tapdev backed by qcow, with a qcow backing
# file.  qcow-create (in the guest) makes a base with optimised
# allocation; mkfs.ext4, mount, copy a tree in.  Then an overlay on the
# base: fsck is clean, the tree is there, more files go in; after destroy
# and create everything checks out, the base file did not change, and
# qcow2raw's flat copy holds the same filesystem.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=qcow-fs
command -v qcow-create >/dev/null 2>&1 || skip_all "qcow tools not built"

mkdir -p /mnt/fs
mk_tree /tmp/tree1 60
mk_tree /tmp/tree2 40

# check_tree DIR: the files under /mnt/fs/DIR are those of /tmp/DIR.
check_tree() {
	tree_sums "/tmp/$1" >/tmp/sums.want
	tree_sums "/mnt/fs/$1" >/tmp/sums.now
	if ! cmp -s /tmp/sums.want /tmp/sums.now; then
		diff /tmp/sums.want /tmp/sums.now | head -n 20
		die "files under $1 differ"
	fi
}

run qcow-create -r 256 /data/base.qcow
tap_create -a qcow:/data/base.qcow
run mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$TAP_DEV"
run mount -t ext4 "$TAP_DEV" /mnt/fs
run cp -a /tmp/tree1 /mnt/fs/tree1
run umount /mnt/fs
tap_destroy "$TAP_PID" "$TAP_MINOR"
base_sum=$(md5sum /data/base.qcow | cut -d' ' -f1)
log "base: $(ls -l /data/base.qcow | awk '{print $5}') bytes"

run qcow-create 256 /data/over.qcow /data/base.qcow
tap_create -a qcow:/data/over.qcow
run fsck.ext4 -fn "$TAP_DEV"
run mount -t ext4 "$TAP_DEV" /mnt/fs
check_tree tree1
run cp -a /tmp/tree2 /mnt/fs/tree2
run rm -rf /mnt/fs/tree1/dir1
run umount /mnt/fs
tap_destroy "$TAP_PID" "$TAP_MINOR"
echo 3 >/proc/sys/vm/drop_caches

tap_create -a qcow:/data/over.qcow
run fsck.ext4 -fn "$TAP_DEV"
run mount -t ext4 -o ro "$TAP_DEV" /mnt/fs
rm -rf /tmp/tree1/dir1
check_tree tree1
check_tree tree2
run umount /mnt/fs
tap_destroy "$TAP_PID" "$TAP_MINOR"
[ "$(md5sum /data/base.qcow | cut -d' ' -f1)" = "$base_sum" ] ||
	die "the backing file changed"

run qcow2raw /data/flat.raw /data/over.qcow
tap_create -a aio:/data/flat.raw
run fsck.ext4 -fn "$TAP_DEV"
run mount -t ext4 -o ro "$TAP_DEV" /mnt/fs
check_tree tree2
run umount /mnt/fs
tap_destroy "$TAP_PID" "$TAP_MINOR"
rm -f /data/base.qcow /data/over.qcow /data/flat.raw
pass "$T"
