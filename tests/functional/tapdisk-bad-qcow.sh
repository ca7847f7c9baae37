#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# qcow images tapdisk must refuse, each with one clear line from 'tap-ctl
# open' naming the file and the problem, and a non-zero exit: bad magic,
# qcow2, AES encryption, a truncated header, an L1 table past the end of
# the file, an L1 entry and a cluster offset past it, a backing file that
# is missing, a backing loop (through another image, and onto itself),
# a writable overlay with clusters larger than a sector.  The qcow tools
# refuse the same images the same way.  Writes into QEMU's compressed
# clusters fail (and only those).  tapdisk stays up, with nothing open,
# and serves a good image after.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
CREATE=$BINDIR/qcow-create
QCOW2RAW=$BINDIR/qcow2raw
need_built "$CREATE" "$QCOW2RAW"
need_cmd qemu-img qemu-io
cd "$TMPDIR"
td_cleanup TD_PID

MINOR=5

# patch FILE OFFSET HEX: overwrite bytes in place.
patch() {
	printf "$(sed 's/../\\x&/g' <<<"$3")" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

run qemu-img create -q -f qcow good.qcow 8M
run qemu-io -f qcow -c 'write -P 0x42 0 64k' good.qcow >/dev/null
l2=$(od -An -t x8 --endian=big -j 48 -N 8 good.qcow | tr -d ' ')
l2=$((16#$l2))
log "good.qcow: L2 table 0 at $l2"

cp good.qcow badmagic.qcow
patch badmagic.qcow 0 51464958
run qemu-img create -q -f qcow2 v2.qcow 8M
cp good.qcow aes.qcow
patch aes.qcow 36 00000001
head -c 40 good.qcow >short.qcow
cp good.qcow l1past.qcow
patch l1past.qcow 40 0000000010000000
cp good.qcow l1entry.qcow
patch l1entry.qcow 48 0000000100000000
cp good.qcow cluster.qcow
patch cluster.qcow "$l2" 0000000100000000
run qemu-img create -q -f qcow -u -b missing.qcow -F qcow orphan.qcow 8M
run qemu-img create -q -f qcow -u -b loop-b.qcow -F qcow loop-a.qcow 8M
run qemu-img create -q -f qcow -u -b loop-a.qcow -F qcow loop-b.qcow 8M
# QEMU refuses to name the image itself: rename afterwards.
run qemu-img create -q -f qcow -u -b SELF.qcow -F qcow self.qcow 8M
printf 'self' | dd of=self.qcow bs=1 seek=48 conv=notrunc status=none
# Our 4 KiB-cluster image given a backing file by hand.
run "$CREATE" 8 big-overlay.qcow
printf 'good.qcow' | dd of=big-overlay.qcow bs=1 seek=64 conv=notrunc \
	status=none
patch big-overlay.qcow 8 000000000000004000000009

td_start
log "tapdisk $TD_PID"

# refused FILE REGEX [-R]: open must fail with one line naming FILE and
# matching REGEX; nothing is left open.
refused() {
	expect_fail "$TAP_CTL" open -p "$TD_PID" -m $MINOR \
		-a "qcow:$TMPDIR/$1" ${3:-}
	assert_match "$1" "$FAIL_MSG" "file named for $1"
	assert_match "$2" "$FAIL_MSG" "message for $1"
	assert_match "state=0x0 args=-" "$("$TAP_CTL" list -p "$TD_PID")" \
		"state after refusing $1"
}

refused badmagic.qcow "bad magic"
refused v2.qcow "version 3 .*qcow2"
refused aes.qcow "AES"
refused short.qcow "too small"
refused l1past.qcow "L1 table .*past the end"
refused l1entry.qcow "L1 entry 0 points past the end"
refused cluster.qcow "L2 table 0 entry 0: cluster offset .*past the end"
refused orphan.qcow "missing.qcow"
refused loop-a.qcow "loop"
refused self.qcow "loop"
refused big-overlay.qcow "read-only"
# Read-only, the overlay is fine.
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/big-overlay.qcow" \
	-R --rw randread --ops 50 --model bo.model

log "the tools refuse them too"
for f in badmagic aes l1past l1entry cluster loop-a self; do
	expect_fail "$QCOW2RAW" out.raw $f.qcow
	assert_match "$f.qcow" "$FAIL_MSG"
done
expect_fail "$CREATE" 8 x.qcow missing-backing.raw
expect_fail "$CREATE" -r 8 x.qcow good.qcow

log "writes into compressed clusters fail, others do not"
head -c $((4 * 1048576)) /dev/zero | tr '\0' 'c' >cz.raw
truncate -s $((8 * 1048576)) cz.raw
qemu-img convert -c -f raw -O qcow cz.raw cz.qcow || true
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/cz.qcow" \
	--rw randwrite --bs 4k --range 8192 --ops 20 --expect-errors \
	--model cz.model
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/cz.qcow" \
	--rw randrw --bs 4k --offset 8192 --ops 200 --model cz2.model \
	--model-init file:cz.raw
grep -q "compressed cluster: not supported" "$TMPDIR/tapdisk.$TD_PID.log" ||
	die "no log line for the write into a compressed cluster"

log "and a good image serves I/O"
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/good.qcow" \
	--ops 200 --model m.model --model-init read
td_stop "$TD_PID"
TD_PID=
echo ok
