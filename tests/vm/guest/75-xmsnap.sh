#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test: live snapshots with xmsnap under guest I/O (issue 6).  For a
# VHD-backed tapdev (a qcow-backed one with XMSNAP_FMT=qcow, as
# 75-xmsnap-qcow.sh runs it), 256 MiB: mkfs.ext4, mount, a
# tree of files, then fio (randwrite with verify=crc32c, rate-limited so
# that it outlasts the snapshots) on the mounted filesystem while xmsnap
# takes 20 snapshots, one per second.  Then:
#   xmsnap-fio-FMT     fio finished without error and its verify passed;
#   xmsnap-chain-FMT   the chain is 21 deep (vhd: vhd-util query -d and
#                      check -p clean; qcow: the backing files, read from
#                      the headers, lead down to the base);
#   xmsnap-snaps-FMT   while the disk runs on, each of the 20 frozen images
#                      (the base and the first 19 snapshots) opens
#                      read-only on its own through a second tapdev
#                      (tap-ctl open -R); a throwaway child of it, opened
#                      read-write through a third, starts with the same
#                      sectors, and after journal replay (e2fsck -E
#                      journal_only) e2fsck -fn finds nothing; the tree is
#                      intact; the frozen image's file was not written;
#   xmsnap-coalesce-FMT the whole chain flattened (vhd: vhd-util coalesce
#                      -o; qcow: qcow2raw of the leaf, served as aio) passes
#                      e2fsck -fn and holds exactly the files of the live
#                      filesystem at the end.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=xmsnap
command -v xmsnap >/dev/null 2>&1 || skip_all "xmsnap is not in the guest"
FMT=${XMSNAP_FMT:-vhd}
if [ "$FMT" = qcow ]; then
	command -v qcow-create >/dev/null 2>&1 || skip_all "qcow tools not built"
fi
NSNAP=20
MB=256
MNT=/mnt/xm
SNAPMNT=/mnt/xmsnap

mkdir -p $MNT $SNAPMNT
mk_tree /tmp/xm-tree 20
tree_sums /tmp/xm-tree >/tmp/xm-tree.sums

# qcow_backing FILE: the backing file named in a qcow header (empty: none).
qcow_backing() {
	local off len
	off=$(od -An -tx1 -j8 -N8 "$1" | tr -d ' \n')
	len=$(od -An -tx1 -j16 -N4 "$1" | tr -d ' \n')
	[ -n "$off" ] && [ -n "$len" ] || return 1
	[ $((0x$len)) -gt 0 ] || return 0
	dd if="$1" bs=1 skip=$((0x$off)) count=$((0x$len)) 2>/dev/null
}

# head_sum DEV: md5 of the first MiB.
head_sum() {
	dd if="$1" bs=64k count=16 2>/dev/null | md5sum | cut -d' ' -f1
}

# fsck_clean DEV: journal replay, then a full read-only check that must
# find nothing.
fsck_clean() {
	local rc
	e2fsck -E journal_only -p "$1" >/tmp/xm-fsck.log 2>&1
	rc=$?
	[ $rc -le 1 ] || { cat /tmp/xm-fsck.log; die "journal replay on $1: e2fsck exit $rc"; }
	e2fsck -fn "$1" >/tmp/xm-fsck.log 2>&1
	rc=$?
	[ $rc -eq 0 ] || { cat /tmp/xm-fsck.log; die "e2fsck -fn $1 after journal replay: exit $rc"; }
}

# tap_idle: a tap with a tapdisk attached and no image; sets IDLE_PID and
# IDLE_MINOR.  Images are then opened and closed on it: no tapdisk to
# start for each one.
tap_idle() {
	local dev
	dev=$(tap-ctl allocate) || die "tap-ctl allocate failed"
	IDLE_MINOR=${dev#/dev/xen/blktap-2/tapdev}
	IDLE_PID=$(tap-ctl spawn) || die "tap-ctl spawn failed"
	VT_TAPS="$VT_TAPS $IDLE_PID:$IDLE_MINOR"
	tap-ctl attach -p "$IDLE_PID" -m "$IDLE_MINOR" ||
		die "tap-ctl attach -p $IDLE_PID -m $IDLE_MINOR failed"
}

# tap_open PID MINOR ARGS...: open an image there; its tapdev appears.
tap_open() {
	local p=$1 m=$2
	shift 2
	tap-ctl open -p "$p" -m "$m" "$@" || die "tap-ctl open -p $p -m $m $* failed"
	wait_until 10 test -b "/dev/xen/blktap-2/tapdev$m" ||
		die "no /dev/xen/blktap-2/tapdev$m after open"
}

# uptime_s: seconds since boot.
uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

one_format() {	# one_format vhd|qcow
	local fmt=$1 dir=/data/xm-$1 base leaf fio i t0 due now rc snaps n img b
	local pid minor child ro_sum rw_sum fsum rop rom rwp rwm
	dir=/data/xm-$fmt
	rm -rf "$dir"
	mkdir -p "$dir"
	base=$dir/disk.$fmt
	T=xmsnap-fio-$fmt
	if [ "$fmt" = vhd ]; then
		run vhd-util create -n "$base" -s $MB
	else
		run qcow-create $MB "$base"
	fi
	tap_create -a "$fmt:$base"
	pid=$TAP_PID
	minor=$TAP_MINOR
	# Few inodes and a small journal: e2fsck runs 40 times.
	run mkfs.ext4 -q -F -N 2048 -J size=4 \
		-E lazy_itable_init=0,lazy_journal_init=0 "$TAP_DEV"
	run mount -t ext4 "$TAP_DEV" $MNT
	run cp -a /tmp/xm-tree $MNT/tree
	run sync

	log "fio with verify=crc32c on $MNT while xmsnap takes $NSNAP snapshots"
	fio --name=xm --directory=$MNT --nrfiles=4 --size=48m \
		--ioengine=libaio --direct=1 --iodepth=8 --rw=randwrite \
		--bsrange=4k-64k --rate=,1536k --fsync=32 \
		--verify=crc32c --verify_fatal=1 --do_verify=1 \
		--exitall_on_error=1 >/tmp/xm-fio.log 2>&1 &
	fio=$!
	BG_PIDS="$BG_PIDS $fio"
	sleep 2
	: >/tmp/xm-snaps
	: >/tmp/xm-pauses
	t0=$(uptime_s)
	i=1
	while [ $i -le $NSNAP ]; do
		# One per second: the i-th at t0 + i.
		due=$(awk -v a="$t0" -v i=$i 'BEGIN { print a + i }')
		now=$(uptime_s)
		sleep "$(awk -v d="$due" -v n="$now" 'BEGIN { s = d - n; print (s > 0 ? s : 0) }')"
		kill -0 $fio 2>/dev/null ||
			{ cat /tmp/xm-fio.log; die "fio ended before snapshot $i"; }
		n=$(xmsnap -v "$TAP_DEV" 2>/tmp/xm-snap.err)
		rc=$?
		grep 'paused in' /tmp/xm-snap.err >>/tmp/xm-pauses
		[ $rc -eq 0 ] || { cat /tmp/xm-snap.err; die "xmsnap $TAP_DEV (snapshot $i): exit $rc"; }
		[ -f "$n" ] || die "xmsnap printed '$n', not a file"
		echo "$n" >>/tmp/xm-snaps
		i=$((i + 1))
	done
	log "$NSNAP snapshots in $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s; pauses: $(sed 's/.*paused in //; s/ s$//' /tmp/xm-pauses | tr '\n' ' ')"
	wait_pid $fio 600
	rc=$?
	BG_PIDS=
	cat /tmp/xm-fio.log
	[ $rc -eq 0 ] || die "fio exited with status $rc"
	grep -qiE 'verify.*(fail|mismatch)|bad magic|crc32c.*(fail|wanted)' /tmp/xm-fio.log &&
		die "fio reports a verify failure"
	grep -q 'err= 0' /tmp/xm-fio.log || die "fio reports an error"
	pass "$T"

	leaf=$(tail -n 1 /tmp/xm-snaps)
	[ "$(tap-ctl list -m "$minor")" = "pid=$pid minor=$minor state=0x3 args=$fmt:$leaf" ] ||
		die "the disk does not run on the last snapshot: $(tap-ctl list -m "$minor")"
	tree_sums $MNT >/tmp/xm-final.sums

	T=xmsnap-snaps-$fmt
	# The frozen images: the base and every snapshot but the last.
	{ echo "$base"; head -n $((NSNAP - 1)) /tmp/xm-snaps; } >/tmp/xm-frozen
	child=$dir/throwaway.$fmt
	tap_idle
	rop=$IDLE_PID
	rom=$IDLE_MINOR
	tap_idle
	rwp=$IDLE_PID
	rwm=$IDLE_MINOR
	i=0
	while read -r img; do
		i=$((i + 1))
		# Size and mtime: any write through a tapdisk changes them.
		fsum=$(stat -c '%s %Y' "$img")
		tap_open $rop $rom -R -a "$fmt:$img"
		ro_sum=$(head_sum /dev/xen/blktap-2/tapdev$rom)
		tap-ctl close -p $rop -m $rom || die "tap-ctl close -p $rop -m $rom"
		if [ "$fmt" = vhd ]; then
			vhd-util snapshot -n "$child" -p "$img" -e ||
				die "vhd-util snapshot -n $child -p $img failed"
		else
			qcow-create $MB "$child" "$img" >/dev/null ||
				die "qcow-create $MB $child $img failed"
		fi
		tap_open $rwp $rwm -a "$fmt:$child"
		rw_sum=$(head_sum /dev/xen/blktap-2/tapdev$rwm)
		[ "$ro_sum" = "$rw_sum" ] ||
			die "$img read-only and its child read-write differ"
		fsck_clean /dev/xen/blktap-2/tapdev$rwm
		mount -t ext4 -o ro /dev/xen/blktap-2/tapdev$rwm $SNAPMNT ||
			die "cannot mount the child of $img"
		tree_sums $SNAPMNT/tree >/tmp/xm-snap.sums
		cmp -s /tmp/xm-tree.sums /tmp/xm-snap.sums || die "the tree in $img differs"
		umount $SNAPMNT || die "umount $SNAPMNT"
		tap-ctl close -p $rwp -m $rwm || die "tap-ctl close -p $rwp -m $rwm"
		rm -f "$child"
		[ "$(stat -c '%s %Y' "$img")" = "$fsum" ] || die "$img was written"
	done </tmp/xm-frozen
	tap_destroy $rop $rom
	tap_destroy $rwp $rwm
	[ $i -eq $NSNAP ] || die "checked $i frozen images, not $NSNAP"
	log "$i frozen images, opened while the disk runs on: clean after journal replay, tree intact"
	pass "$T"

	run umount $MNT
	tap_destroy "$pid" "$minor"

	T=xmsnap-chain-$fmt
	[ "$(sort -u /tmp/xm-snaps | wc -l)" -eq $NSNAP ] || die "snapshot names repeat"
	if [ "$fmt" = vhd ]; then
		run vhd-util check -n "$leaf" -p
		[ "$(vhd-util query -n "$leaf" -d)" = "chain depth: $((NSNAP + 1))" ] ||
			die "vhd-util query -d: $(vhd-util query -n "$leaf" -d)"
		# Each snapshot's parent is the one before it.
		b=$base
		while read -r n; do
			[ "$(vhd-util query -n "$n" -p)" = "$b" ] ||
				die "parent of $n is $(vhd-util query -n "$n" -p), not $b"
			b=$n
		done </tmp/xm-snaps
	else
		n=$leaf
		i=1
		while b=$(qcow_backing "$n") && [ -n "$b" ]; do
			i=$((i + 1))
			[ $i -le $((NSNAP + 1)) ] || die "qcow chain deeper than $((NSNAP + 1))"
			n=$b
		done
		[ "$n" = "$base" ] || die "the qcow chain ends at $n, not $base"
		[ $i -eq $((NSNAP + 1)) ] || die "qcow chain is $i deep"
	fi
	log "chain of $fmt: $((NSNAP + 1)) deep"
	pass "$T"

	T=xmsnap-coalesce-$fmt
	if [ "$fmt" = vhd ]; then
		run vhd-util coalesce -n "$leaf" -o "$dir/flat.vhd"
		run vhd-util check -n "$dir/flat.vhd"
		tap_create -R -a "vhd:$dir/flat.vhd"
	else
		run qcow2raw "$dir/flat.raw" "$leaf"
		tap_create -R -a "aio:$dir/flat.raw"
	fi
	run e2fsck -fn "$TAP_DEV"
	run mount -t ext4 -o ro "$TAP_DEV" $SNAPMNT
	tree_sums $SNAPMNT >/tmp/xm-flat.sums
	run umount $SNAPMNT
	tap_destroy "$TAP_PID" "$TAP_MINOR"
	if ! cmp -s /tmp/xm-final.sums /tmp/xm-flat.sums; then
		diff /tmp/xm-final.sums /tmp/xm-flat.sums | head -n 20
		die "the flattened chain holds other files than the live filesystem"
	fi
	pass "$T"
	rm -rf "$dir"
}

one_format "$FMT"
