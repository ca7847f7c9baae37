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
	td_crash_run "$round" $MINOR -a "qcow:$TMPDIR/img.qcow" -d 64 \
		"${workload[@]}" --seed $((round * 7919)) --model m.model \
		"${init[@]}"
	log "round $round ($kind): killed ${CRASH_DELAY}s after the first writes;" \
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
