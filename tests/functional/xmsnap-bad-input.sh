#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/xmsnap refuses what it cannot do, each time with one line on
# stderr naming the problem and a non-zero exit (2 for usage), and without
# pausing the disk or leaving a file behind: bad options and arguments, a
# target that is no disk (an unknown minor, a missing file, an image no
# tapdisk serves, a dead tapdisk), a raw (aio) disk, a disk someone else
# paused, an existing snapshot name, a missing xmsnap-xen for a Xen
# guest's disk.  -h prints the usage and exits 0; -n prints the steps and
# changes nothing.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
XMSNAP=$SRCDIR/scripts/xmsnap
cd "$TMPDIR"
td_cleanup LIVE DEAD_PID AIO_PID RIG_PID
# No xmsnap-xen anywhere: the Xen paths must say so.
unset XMSNAP_XEN
PATH=$(dirname "$TAP_CTL"):/usr/bin:/bin
export PATH

# files: the directory's listing, to show that nothing was left behind.
files() {
	ls -A "$TMPDIR" | grep -v -e '^control$' -e '^tapdisk\.' -e '^stderr\.' | sort
}

# pauses PID: how often the tapdisk has paused (its log).
pauses() {
	grep -c "pausing with" "$TMPDIR/tapdisk.$1.log" || true
}

log "usage"
out=$("$XMSNAP" -h)
assert_match "^usage: xmsnap " "$out" "-h"
# Every option of the usage is in the man page, which renders cleanly.
for f in $(grep -oE '^  -[A-Za-z]' <<<"$out" | tr -d ' '); do
	grep -q -- "^\.B.* \\\\$f\b" "$SRCDIR/man/xmsnap.8" ||
		die "man/xmsnap.8 does not document $f"
done
if command -v groff >/dev/null 2>&1; then
	warn=$(LC_ALL=C groff -man -ww -z "$SRCDIR/man/xmsnap.8" 2>&1)
	[ -z "$warn" ] || die "groff warns about xmsnap.8: $warn"
fi
fails_with 2 "unknown option -x" "$XMSNAP" -x 0
fails_with 2 "missing TARGET" "$XMSNAP"
fails_with 2 "missing TARGET" "$XMSNAP" -v
fails_with 2 "empty argument" "$XMSNAP" ""
fails_with 2 "-a takes DOMAIN only" "$XMSNAP" -a dom1 xvda
fails_with 2 "-a needs DOMAIN" "$XMSNAP" -a
fails_with 2 "-D needs a Xen guest" "$XMSNAP" -D 0
fails_with 2 "unexpected argument 'c'" "$XMSNAP" 0 b c d
fails_with 2 "'nonsense' is not a minor, a tapdev or an image file" \
	"$XMSNAP" nonsense

log "a disk to refuse things for, under I/O"
run "$VHD_UTIL" create -n disk.vhd -s 32
td_start
LIVE=$TD_PID
"$TD_RIG" run -p "$LIVE" -m 4 -a "vhd:$TMPDIR/disk.vhd" -d 8 \
	--bs 4k-64k --rw randrw --stop-on-signal --seed 5 --model m.model \
	>rig.out 2>&1 &
RIG_PID=$!
for _ in $(seq 1 300); do
	"$TAP_CTL" stats -p "$LIVE" -m 4 >/dev/null 2>&1 && break
	sleep 0.1
done
before=$(files)

log "targets that are no disk"
fails_with 1 "no running tapdisk serves minor 7$" "$XMSNAP" 7
fails_with 1 "no running tapdisk serves minor 9 \(/dev/xen/blktap-2/tapdev9\)" \
	"$XMSNAP" /dev/xen/blktap-2/tapdev9
fails_with 1 "no such image or tapdev: $TMPDIR/missing.vhd" \
	"$XMSNAP" "$TMPDIR/missing.vhd"
run "$VHD_UTIL" create -n other.vhd -s 32
fails_with 1 "no running tapdisk serves $TMPDIR/other.vhd \(as its leaf image\)" \
	"$XMSNAP" "$TMPDIR/other.vhd"
rm other.vhd

log "a dead tapdisk: its stale socket is no disk"
run "$VHD_UTIL" create -n dead.vhd -s 32
td_start
DEAD_PID=$TD_PID
run "$TAP_CTL" open -p "$DEAD_PID" -m 5 -a "vhd:$TMPDIR/dead.vhd"
kill -KILL "$DEAD_PID"
wait "$DEAD_PID" 2>/dev/null || true
DEAD_PID=
fails_with 1 "no running tapdisk serves minor 5" "$XMSNAP" 5
fails_with 1 "no running tapdisk serves dead.vhd \\(as its leaf image\\)" \
	"$XMSNAP" dead.vhd
rm dead.vhd

log "a raw (aio) disk cannot be snapshotted"
truncate -s 32M raw.img
td_start
AIO_PID=$TD_PID
run "$TAP_CTL" open -p "$AIO_PID" -m 6 -a "aio:$TMPDIR/raw.img"
fails_with 1 "minor 6 serves aio:$TMPDIR/raw.img: only vhd and qcow images" \
	"$XMSNAP" 6
assert_eq 0 "$(pauses "$AIO_PID")" "pauses of the aio disk"
run "$TAP_CTL" close -p "$AIO_PID" -m 6
td_stop "$AIO_PID"
AIO_PID=
rm raw.img

log "an existing name is not overwritten"
echo precious >taken.vhd
fails_with 1 "$TMPDIR/taken.vhd exists already; not overwriting it" \
	"$XMSNAP" 4 taken.vhd
assert_eq precious "$(cat taken.vhd)" "the existing file"
rm taken.vhd
fails_with 1 "cannot create $TMPDIR/nodir/x.vhd: no such directory $TMPDIR/nodir$" \
	"$XMSNAP" 4 nodir/x.vhd

log "a disk someone else paused is left alone"
run "$TAP_CTL" pause -p "$LIVE" -m 4
fails_with 1 "minor 4 of tapdisk $LIVE is paused or pausing already" \
	"$XMSNAP" 4
assert_match "state=0x[0-9a-f]*[89a-f] " "$("$TAP_CTL" list -m 4) " \
	"still paused"
run "$TAP_CTL" unpause -p "$LIVE" -m 4

log "a Xen guest's disk without xmsnap-xen"
# The build directory (on PATH above) holds an xmsnap-xen: leave it out.
noxen() {
	env PATH=/usr/bin:/bin TAP_CTL="$TAP_CTL" \
		VHD_UTIL="$(dirname "$TAP_CTL")/vhd-util" "$@"
}
fails_with 1 "xmsnap-xen not found" noxen "$XMSNAP" guest1 xvda
fails_with 1 "xmsnap-xen not found" noxen "$XMSNAP" -a guest1
fails_with 1 "xmsnap-xen not found" noxen "$XMSNAP" -D guest1 xvda name
fails_with 1 "XMSNAP_XEN=$TMPDIR/nothing is not an executable" \
	env XMSNAP_XEN="$TMPDIR/nothing" "$XMSNAP" guest1 xvda

log "tools that are not there"
fails_with 1 "vhd-util not found" env VHD_UTIL= PATH=/usr/bin:/bin \
	TAP_CTL="$TAP_CTL" "$XMSNAP" 4

log "nothing was paused, nothing left behind"
assert_eq 1 "$(pauses "$LIVE")" "pauses (the manual one only)"
assert_eq "$before" "$(files)" "files"

log "-n: the steps, nothing done"
out=$("$XMSNAP" -n 4 dry.vhd)
echo "$out"
assert_match "pause -p $LIVE -m 4" "$out"
assert_match "snapshot -n $TMPDIR/dry.vhd -p $TMPDIR/disk.vhd" "$out"
assert_match "unpause -p $LIVE -m 4 -a vhd:$TMPDIR/dry.vhd" "$out"
[ ! -e dry.vhd ] || die "-n made dry.vhd"
assert_match "args=vhd:$TMPDIR/disk.vhd$" "$("$TAP_CTL" list -m 4)" "leaf after -n"

log "the disk worked throughout"
rig_writer_stop 60
"$TAP_CTL" close -p "$LIVE" -m 4 >/dev/null 2>&1 || true
echo ok
