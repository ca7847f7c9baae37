#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Several tapdisks share one RAM disk (ram driver), in the real /dev/shm:
#  - a write through one tapdisk is read through another, both ways, while
#    both have the disk open;
#  - the object stays while any user is left and is gone after the last
#    close;
#  - when every user is killed, the next open starts afresh (contents are
#    lost unless saved), and cleans up after itself;
#  - "save" writes the contents back to the image file at the last close;
#  - a second open with another size, or bad options, is refused.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
cd "$TMPDIR"
td_cleanup A B C
[ -d /dev/shm ] && [ -w /dev/shm ] || skip "no writable /dev/shm"
unset BLKTAP_RAM_DIR

OPS=${TAPDISK_TEST_OPS:-2000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
NAME=tdtest-$$-$RANDOM
OBJ=/dev/shm/$NAME
DISK="ram:$OBJ?size=32M"
# lib.sh owns the EXIT trap; wrap it so that a failure leaves no object
# in the real /dev/shm (the status lib_exit sees is kept).
trap 'rc=$?; rm -f "$OBJ"; (exit $rc); lib_exit' EXIT

present() { [ -e "$OBJ" ] || die "$OBJ missing while in use"; }
gone() { [ ! -e "$OBJ" ] || die "$OBJ still there after the last close"; }

td_start; A=$TD_PID
td_start; B=$TD_PID
log "tapdisks $A and $B"

log "both open the disk; A writes, B reads A's writes and writes too"
run "$TAP_CTL" open -p "$A" -m 1 -a "$DISK"
present
run "$TAP_CTL" open -p "$B" -m 2 -a "$DISK"
run "$TD_RIG" run -p "$A" -m 1 -d 64 --bs 512-256k --rw randwrite \
	--ops "$OPS" --seed 41 --model shared.model
run "$TD_RIG" run -p "$B" -m 2 -d 64 --bs 512-256k --rw rw70 \
	--ops "$OPS" --seed 42 --model shared.model
td_close_detach "$A" 1
present

log "a third tapdisk reads everything A and B wrote"
td_start; C=$TD_PID
run "$TD_RIG" run -p "$C" -m 3 -a "$DISK" -d 16 --bs 1m --rw read \
	--ops 32 --seed 43 --model shared.model
present
td_close_detach "$B" 2
gone

log "another size while in use is refused"
run "$TAP_CTL" open -p "$A" -m 1 -a "$DISK"
expect_fail "$TAP_CTL" open -p "$B" -m 2 -a "ram:$OBJ?size=16M"
assert_match "$NAME.*33554432 bytes, not 16777216" "$FAIL_MSG"
for bad in "ram:$OBJ?size=12x" "ram:$OBJ?size=1000" "ram:$OBJ?bogus" \
	"ram:$TMPDIR/$NAME?size=1M" "ram:$TMPDIR/missing.img" \
	"ram:$OBJ?size=1M,save" "ram:/dev/shm/td-ram-f-1-2?size=1M"; do
	expect_fail "$TAP_CTL" open -p "$B" -m 2 -a "$bad"
done
present
run "$TAP_CTL" close -p "$A" -m 1
gone

log "every user killed: the next open starts afresh"
run "$TAP_CTL" open -p "$A" -m 1 -a "$DISK"
run "$TAP_CTL" open -p "$B" -m 2 -a "$DISK"
run "$TD_RIG" run -p "$A" -m 1 -d 32 --bs 64k --rw write --ops 512 \
	--seed 44 --model lost.model
kill -9 "$A" "$B"
wait "$A" "$B" 2>/dev/null || true
A= B=
present
run "$TD_RIG" run -p "$C" -m 3 -a "$DISK" -d 16 --bs 1m --rw read \
	--ops 32 --seed 45 --model afresh.model
gone

log "save on close, with two users"
mkrandom disk.img $((16 << 20)) ram-shared
cp disk.img disk.orig
td_start; A=$TD_PID
run "$TAP_CTL" open -p "$A" -m 1 -a "ram:$TMPDIR/disk.img?save"
run "$TD_RIG" run -p "$C" -m 3 -a "ram:$TMPDIR/./disk.img" -d 64 \
	--bs 512-1m --rw randrw --ops "$OPS" --seed 46 \
	--model-init file:disk.orig --model saved.model
# Still in use by A: not saved yet.
cmp_files disk.orig disk.img
run "$TAP_CTL" close -p "$A" -m 1
run "$TD_RIG" verify --model saved.model --image disk.img --base disk.orig
ls /dev/shm | grep -q "^td-ram-f-.*-$(printf %x "$(stat -c %i disk.img)")\$" &&
	die "the file's RAM disk was not removed"

td_stop "$A"; A=
td_stop "$C"; C=
echo ok
