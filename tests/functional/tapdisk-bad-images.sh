#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Images tapdisk must refuse, each with one clear line from 'tap-ctl open'
# and a non-zero exit: missing files, the wrong type (vhd: on a raw file,
# an unknown or missing prefix), corrupt VHDs, a chain whose parent is
# gone.  tapdisk stays up with nothing open, and opens a good image after.
# Also control requests it must refuse: a dead pid, an unknown minor,
# unpause onto an image of another size.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

MINOR=4
mkrandom disk.raw 4194304 bad-images
run "$VHD_UTIL" create -n good.vhd -s 8
run "$VHD_UTIL" create -n other-size.vhd -s 16
# A truncated image, a bad header cookie, both footers destroyed.
cp good.vhd truncated.vhd
truncate -s 1000 truncated.vhd
cp good.vhd badheader.vhd
printf 'XXXXXXXX' | dd of=badheader.vhd bs=1 seek=512 conv=notrunc 2>/dev/null
cp good.vhd nofooter.vhd
head -c 512 /dev/zero | dd of=nofooter.vhd bs=1 conv=notrunc 2>/dev/null
size=$(file_size nofooter.vhd)
head -c 512 /dev/zero | dd of=nofooter.vhd bs=1 seek=$((size - 512)) \
	conv=notrunc 2>/dev/null
# A child whose parent was removed.
run "$VHD_UTIL" create -n parent.vhd -s 8
run "$VHD_UTIL" snapshot -n orphan.vhd -p parent.vhd
rm parent.vhd
mkdir adir

td_start
log "tapdisk $TD_PID"

# refused PARAMS REGEX: open must fail with one line matching REGEX.
refused() {
	expect_fail "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "$1"
	assert_match "$2" "$FAIL_MSG" "message for $1"
	# Nothing was left open.
	assert_match "state=0x0 args=-" "$("$TAP_CTL" list -p "$TD_PID")" \
		"state after refusing $1"
}

refused "aio:$TMPDIR/missing.raw" "missing.raw"
refused "vhd:$TMPDIR/missing.vhd" "missing.vhd"
refused "vhd:$TMPDIR/disk.raw" "disk.raw"
refused "foo:$TMPDIR/disk.raw" "foo"
refused "$TMPDIR/disk.raw" "type"
refused "vhd:" "."
refused "aio:$TMPDIR/adir" "adir"
refused "vhd:$TMPDIR/truncated.vhd" "truncated.vhd"
refused "vhd:$TMPDIR/badheader.vhd" "badheader.vhd"
refused "vhd:$TMPDIR/nofooter.vhd" "nofooter.vhd"
refused "vhd:$TMPDIR/orphan.vhd" "parent"

log "control requests that must fail"
sleep 0 &
dead=$!
wait "$dead"
expect_fail "$TAP_CTL" open -p "$dead" -m $MINOR -a "aio:$TMPDIR/disk.raw"
expect_fail "$TAP_CTL" pause -p "$TD_PID" -m $MINOR
run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/good.vhd"
expect_fail "$TAP_CTL" pause -p "$TD_PID" -m $((MINOR + 1))
assert_match "minor" "$FAIL_MSG"
expect_fail "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "aio:$TMPDIR/disk.raw"
expect_fail "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR
run "$TAP_CTL" pause -p "$TD_PID" -m $MINOR
expect_fail "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR \
	-a "vhd:$TMPDIR/other-size.vhd"
assert_match "size|sectors" "$FAIL_MSG"
expect_fail "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR \
	-a "vhd:$TMPDIR/missing.vhd"
# Still paused on the old image; unpause onto it works.
assert_match "args=vhd:$TMPDIR/good.vhd" "$("$TAP_CTL" list -p "$TD_PID")"
run "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR

log "and the good image serves I/O"
run "$TAP_CTL" close -p "$TD_PID" -m $MINOR
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/good.vhd" \
	--ops 200 --model m.model
td_stop "$TD_PID"
TD_PID=
echo ok
