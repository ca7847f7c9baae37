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
	td_start
	"$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/img.vmdk" -d 64 \
		"${workload[@]}" --stop-on-signal --seed $((round * 7907)) \
		--model m.model >rig.out 2>&1 &
	RIG_PID=$!
	for _ in $(seq 1 300); do
		n=$(td_stat "$TD_PID" $MINOR requests.write 2>/dev/null) ||
			n=0
		[ "$n" -gt 0 ] && break
		kill -0 "$RIG_PID" 2>/dev/null ||
			{ cat rig.out; die "round $round: td-rig exited early"; }
		sleep 0.1
	done
	[ "$n" -gt 0 ] || die "round $round: no writes in 30 s"
	delay=$(printf '0.%03d' $((RANDOM % 600 + 10)))
	sleep "$delay"
	kill -9 "$TD_PID"
	rc=0
	wait "$TD_PID" || rc=$?
	TD_PID=
	[ $rc -eq 137 ] || die "round $round: tapdisk exited $rc before the kill"
	wait_child "$RIG_PID" 120 ||
		die "round $round: td-rig still running after tapdisk died"
	RIG_PID=
	cat rig.out
	[ "$CHILD_RC" -eq 3 ] ||
		die "round $round: td-rig exited $CHILD_RC, not 3 (tapdisk died)"
	log "round $round ($kind): killed ${delay}s after the first writes; $(file_size img.vmdk) bytes"
	run qemu-img check -f vmdk img.vmdk
	run qemu-img convert -f vmdk -O raw img.vmdk img.raw
	run "$TD_RIG" verify --model m.model --image img.raw
	rm -f img.raw
done
echo ok
