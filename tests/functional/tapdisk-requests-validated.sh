#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Requests a correct front never sends: past the end, across it, wrapping
# around, larger than the slot, unknown ops and flags, no sectors, FUA on
# a read, a flush with sectors, an id naming no slot.  Each must complete
# with an error (or, for the bad id, be dropped), be counted in reqs_bad,
# and leave tapdisk serving; the data is untouched.  (td-rig bad checks
# each request and the counter; here also tap-ctl's view and the data.)
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID

MINOR=7
run "$VHD_UTIL" create -n disk.vhd -s 16
truncate -s 16M disk.raw

td_start
log "tapdisk $TD_PID"
for img in "aio:$TMPDIR/disk.raw" "vhd:$TMPDIR/disk.vhd"; do
	log "$img: some data first"
	model=${img%%:*}.model
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "$img" -d 32 \
		--bs 512-128k --ops 500 --model "$model"
	log "$img: malformed requests"
	run "$TD_RIG" bad -p "$TD_PID" -m $MINOR -a "$img"
	log "$img: still serving, data intact"
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "$img" -d 32 \
		--bs 64k --rw read --ops 256 --model "$model"
done

# Counted where the operator sees it: 14 per image.
run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "aio:$TMPDIR/disk.raw"
assert_eq 28 "$(td_stat "$TD_PID" $MINOR bad)" "reqs_bad in tap-ctl stats"
run "$TAP_CTL" close -p "$TD_PID" -m $MINOR

# td-rig without -a waits for an image; interrupted, it detaches cleanly.
"$TD_RIG" run -p "$TD_PID" -m $MINOR --ops 10 2>rig.err &
RIG_PID=$!
for _ in $(seq 1 100); do
	"$TAP_CTL" list -p "$TD_PID" | grep -q "minor=$MINOR " && break
	sleep 0.1
done
assert_match "state=0x1 " "$("$TAP_CTL" list -p "$TD_PID") " "ring attached"
kill -TERM "$RIG_PID"
wait_child "$RIG_PID" 60 || die "td-rig did not stop on SIGTERM"
RIG_PID=
assert_eq 1 "$CHILD_RC" "exit status of td-rig interrupted while waiting"
assert_match "interrupted" "$(cat rig.err)"
assert_match "state=0x0 " "$("$TAP_CTL" list -p "$TD_PID") " "detached"
td_stop "$TD_PID"
TD_PID=
echo ok
