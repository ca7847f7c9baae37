#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Adjacent requests merge: sequential 4 KiB writes, then reads, at depth
# 32 must show merges in 'tap-ctl stats', with fewer iocbs than requests;
# on a raw file and on an allocated VHD.  The data is checked as usual.
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

MINOR=8
OPS=4096
truncate -s 64M disk.raw
run "$VHD_UTIL" create -n disk.vhd -s 64

td_start
log "tapdisk $TD_PID"
# phase IMG RW: OPS sequential 4 KiB requests at depth 32 in a session
# opened by tap-ctl (so that the stats outlive td-rig's run); the stats
# must show merges, and fewer iocbs than requests.
phase() {
	local img=$1 rw=$2 merges0 iocbs0 reqs0 merges iocbs reqs
	run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "$img"
	merges0=$(tstat merges)
	iocbs0=$(tstat iocbs)
	reqs0=$(( $(tstat requests.write) + $(tstat requests.read) ))
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -d 32 --bs 4k --rw "$rw" \
		--ops $OPS --model "${img%%:*}.model"
	merges=$(( $(tstat merges) - merges0 ))
	iocbs=$(( $(tstat iocbs) - iocbs0 ))
	reqs=$(( $(tstat requests.write) + $(tstat requests.read) - reqs0 ))
	log "$img, $rw: $reqs requests, $iocbs iocbs, $merges merges"
	assert_eq $OPS "$reqs" "requests counted"
	[ "$merges" -gt 0 ] || die "$img: no merges on sequential ${rw}s"
	[ "$iocbs" -lt "$reqs" ] || die "$img: $iocbs iocbs for $reqs requests"
	run "$TAP_CTL" close -p "$TD_PID" -m $MINOR
	run "$TAP_CTL" detach -p "$TD_PID" -m $MINOR
}

for img in "aio:$TMPDIR/disk.raw" "vhd:$TMPDIR/disk.vhd"; do
	phase "$img" write
	phase "$img" read
done
td_stop "$TD_PID"
TD_PID=
echo ok
