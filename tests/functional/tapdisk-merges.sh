#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Adjacent requests merge: sequential 4 KiB writes, then reads, at depth
# 32 must show merges in 'tap-ctl stats', with fewer iocbs than requests;
# on a raw file and on an allocated VHD.  The data is checked as usual.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

MINOR=8
OPS=4096
truncate -s 64M disk.raw
run "$VHD_UTIL" create -n disk.vhd -s 64

td_start
log "tapdisk $TD_PID"
# counter NAME: NAME from the disk's stats (see td_stat).
counter() {
	td_stat "$TD_PID" $MINOR "$1"
}
# phase IMG RW: OPS sequential 4 KiB requests at depth 32 in a session
# opened by tap-ctl (so that the stats outlive td-rig's run); the stats
# must show merges, and fewer iocbs than requests.
phase() {
	local img=$1 rw=$2 merges0 iocbs0 reqs0 merges iocbs reqs
	run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "$img"
	merges0=$(counter merges)
	iocbs0=$(counter iocbs)
	reqs0=$(( $(counter requests.write) + $(counter requests.read) ))
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -d 32 --bs 4k --rw "$rw" \
		--ops $OPS --model "${img%%:*}.model"
	merges=$(( $(counter merges) - merges0 ))
	iocbs=$(( $(counter iocbs) - iocbs0 ))
	reqs=$(( $(counter requests.write) + $(counter requests.read) - reqs0 ))
	log "$img, $rw: $reqs requests, $iocbs iocbs, $merges merges"
	assert_eq $OPS "$reqs" "requests counted"
	[ "$merges" -gt 0 ] || die "$img: no merges on sequential ${rw}s"
	[ "$iocbs" -lt "$reqs" ] || die "$img: $iocbs iocbs for $reqs requests"
	td_close_detach "$TD_PID" $MINOR
}

for img in "aio:$TMPDIR/disk.raw" "vhd:$TMPDIR/disk.vhd"; do
	phase "$img" write
	phase "$img" read
done
td_stop "$TD_PID"
TD_PID=
echo ok
