#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 the tapdisk while td-rig writes to unallocated grains of a
# monolithicSparse VMDK (made by qemu-img), at a random moment, several
# rounds.  td-rig saves its model with the writes in flight marked "old or
# new" and exits 3.  Then 'qemu-img check' must be clean and every
# acknowledged write present, read both through tapdisk (first thing in
# the next round) and by 'qemu-img convert'.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
need_cmd qemu-img
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID

ROUNDS=${CRASH_ROUNDS:-6}
MB=256
MINOR=2

for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then
		rm -f img.vmdk m.model
		run qemu-img create -q -f vmdk img.vmdk ${MB}M
		kind="fresh image"
		workload=(--bs 512-8k --rw write)
	else
		kind="same image, after a crash"
		workload=(--bs 4k-128k --rw randrw --read-pct 10)
	fi
	td_crash_run "$round" $MINOR -a "vmdk:$TMPDIR/img.vmdk" -d 64 \
		"${workload[@]}" --seed $((round * 7907)) --model m.model
	log "round $round ($kind): killed ${CRASH_DELAY}s after the first writes; $(file_size img.vmdk) bytes"
	run qemu-img check -f vmdk img.vmdk
	run qemu-img convert -f vmdk -O raw img.vmdk img.raw
	run "$TD_RIG" verify --model m.model --image img.raw
	rm -f img.raw
done
echo ok
