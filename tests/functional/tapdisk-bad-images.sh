#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Images tapdisk must refuse, each with one clear line from 'tap-ctl open'
# and a non-zero exit: missing files, the wrong type (vhd: on a raw file,
# an unknown or missing prefix), corrupt VHDs, a chain whose parent is
# gone.  tapdisk stays up with nothing open, and opens a good image after.
# Also control requests it must refuse: a dead pid, an unknown minor,
# unpause onto an image of another size.
# shellcheck source=tests/functional/lib.sh
own_tmp=1
[ -n "${TMPDIR:-}" ] && [ "$TMPDIR" != /tmp ] && own_tmp=0
. "$(dirname "$0")/lib.sh"

for bin in "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"; do
	[ -x "$bin" ] || die "not built: $bin"
done
cd "$TMPDIR"
TD_PID=
RIG_PID=
# Only our own processes; on failure, show what tapdisk logged.
cleanup() {
	local rc=$? f
	if [ -n "$RIG_PID" ]; then kill -9 "$RIG_PID" 2>/dev/null || true; fi
	if [ -n "$TD_PID" ]; then kill -9 "$TD_PID" 2>/dev/null || true; fi
	if [ $rc -ne 0 ]; then
		for f in "$TMPDIR"/tapdisk.*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 30 lines)"
			tail -n 30 "$f"
		done
	fi
	if [ "$own_tmp" = 1 ]; then rm -rf "$TMPDIR"; fi
}
trap cleanup EXIT

# tstat NAME: one number from 'tap-ctl stats' of $TD_PID/$MINOR; NAME is
# a top-level key (merges, retries...) or SECTION.KEY (requests.write).
tstat() {
	local out v
	out=$("$TAP_CTL" stats -p "$TD_PID" -m "$MINOR") ||
		die "tap-ctl stats failed"
	v=$(awk -v want="$1" '
		/^  "[a-z_]+": [{]/ {
			sect = $1; gsub(/[":]/, "", sect); next
		}
		/^  [}]/ { sect = "" }
		/^ +"[a-z_]+": -?[0-9]+,?$/ {
			k = $1; gsub(/[":]/, "", k)
			key = ($0 ~ /^  "/) ? k : sect "." k
			v = $2; sub(/,$/, "", v)
			if (key == want) { print v; exit }
		}' <<<"$out")
	[ -n "$v" ] || die "no $1 in tap-ctl stats: $out"
	echo "$v"
}

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
