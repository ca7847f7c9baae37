#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 the tapdisk while td-rig writes to unallocated clusters of a
# qcow image, at a random moment, several rounds: plain images, images
# with optimised allocation, and an overlay on a backing file.  td-rig
# saves its model with the writes in flight marked "old or new" and
# exits 3.  Then the image must open, and qcow2raw, qemu-img and tapdisk
# itself must all read every acknowledged write.  Every other round
# carries on with the same image.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
CREATE=$BINDIR/qcow-create
QCOW2RAW=$BINDIR/qcow2raw
need_built "$CREATE" "$QCOW2RAW"
need_cmd qemu-img
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID

ROUNDS=${CRASH_ROUNDS:-8}
MB=256
MINOR=1
mkrandom base.raw $((MB * 1048576)) crash-qcow

for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then
		rm -f img.qcow m.model
		init=()
		case $((round % 6)) in
		1) run "$CREATE" $MB img.qcow; kind="fresh image" ;;
		3) run "$CREATE" -r $MB img.qcow
		   kind="fresh image, optimised allocation" ;;
		5) run "$CREATE" $MB img.qcow base.raw
		   kind="fresh overlay on a raw file"
		   init=(--model-init file:base.raw) ;;
		esac
		# Small sequential writes from the start: allocating all along.
		workload=(--bs 512-8k --rw write)
	else
		kind="$kind, after a crash"
		init=()
		workload=(--bs 4k-64k --rw randrw --read-pct 10 --fua-pct 20)
	fi
	td_start
	"$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/img.qcow" -d 64 \
		"${workload[@]}" --stop-on-signal --seed $((round * 7919)) \
		--model m.model "${init[@]}" >rig.out 2>&1 &
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
	log "round $round ($kind): killed ${delay}s after the first writes;" \
		"image of $(file_size img.qcow) bytes"

	rm -f ours.raw qemu.raw
	run "$QCOW2RAW" ours.raw img.qcow
	run "$TD_RIG" verify --model m.model --image ours.raw
	run qemu-img convert -f qcow -O raw img.qcow qemu.raw
	cmp_files ours.raw qemu.raw
	# tapdisk opens it again and reads the same.
	td_start
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/img.qcow" \
		-R --rw randread --bs 4k-1m --ops 300 --seed "$round" \
		--model check.model --model-init file:ours.raw
	td_stop "$TD_PID"
	TD_PID=
	rm -f check.model ours.raw qemu.raw
done
echo ok
