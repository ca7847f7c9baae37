#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Pause and unpause under load.  td-rig keeps writes (and some reads) in
# flight on a VHD while, several times over, the disk is paused, the leaf
# snapshotted with vhd-util, and tapdisk unpaused onto the new child
# (unpause -a).  No request may fail, every read is checked as it
# completes, and afterwards the whole chain holds exactly the model.
# Pausing a paused disk says "already paused" (exit 3) and changes nothing.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID

need_cmd qemu-img
ROUNDS=${PAUSE_ROUNDS:-4}
MB=64
SECTORS=$((MB * 2048))
MINOR=2

run "$VHD_UTIL" create -n leaf0.vhd -s $MB
td_start
log "tapdisk $TD_PID"
"$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/leaf0.vhd" -d 32 \
	--bs 512-256k --rw randrw --read-pct 30 --flush-every 100 \
	--stop-on-signal --timeout 120 --seed 31 --model m.model \
	>rig.out 2>&1 &
RIG_PID=$!
leaf=leaf0.vhd
# td-rig attaches and opens the image first.
for _ in $(seq 1 300); do
	"$TAP_CTL" stats -p "$TD_PID" -m $MINOR >/dev/null 2>&1 && break
	kill -0 "$RIG_PID" 2>/dev/null || { cat rig.out; die "td-rig exited"; }
	sleep 0.1
done
wait_writes 200

for i in $(seq 1 "$ROUNDS"); do
	child=child$i.vhd
	log "round $i: pause with I/O in flight, snapshot $leaf, unpause -a $child"
	run "$TAP_CTL" pause -p "$TD_PID" -m $MINOR
	state=$("$TAP_CTL" list -p "$TD_PID")
	assert_match "state=0x[0-9a-f]*[89a-f] " "$state " "paused state"
	# A second pause: refused as already paused, nothing changed.
	rc=0
	out=$("$TAP_CTL" pause -p "$TD_PID" -m $MINOR 2>&1) || rc=$?
	assert_eq 3 "$rc" "exit status of a second pause"
	assert_match "already paused" "$out"
	assert_eq "$state" "$("$TAP_CTL" list -p "$TD_PID")" "state after a second pause"
	run "$VHD_UTIL" snapshot -n $child -p $leaf
	run "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/$child"
	assert_match "args=vhd:$TMPDIR/$child" "$("$TAP_CTL" list -p "$TD_PID")"
	leaf=$child
	wait_writes 200
done

log "stop the writer: it drains, saves its model, closes and detaches"
rig_writer_stop
# What tapdisk had in flight at each pause, for the record.
grep -h "pausing with" "$TMPDIR"/tapdisk.*.log || true
td_stop "$TD_PID"
TD_PID=

log "the chain holds the model"
for img in leaf0.vhd child*.vhd; do
	run "$VHD_UTIL" check -n "$img"
done
depth=$("$VHD_UTIL" query -n "$leaf" -d)
assert_eq "chain depth: $((ROUNDS + 1))" "$depth" "depth of $leaf"
"$VHD_UTIL" read -n "$leaf" -r 0 -c $SECTORS >chain.raw ||
	die "vhd-util read failed"
run "$TD_RIG" verify --model m.model --image chain.raw
# QEMU reads no differencing chains: flatten first.
run "$VHD_UTIL" coalesce -n "$leaf" -o flat.vhd
run qemu-img convert -f vpc -O raw flat.vhd qemu.raw
run "$TD_RIG" verify --model m.model --image qemu.raw
echo ok
