#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Requests a correct front never sends: past the end, across it, wrapping
# around, larger than the slot, unknown ops and flags, no sectors, FUA on
# a read, a flush with sectors, an id naming no slot.  Each must complete
# with an error (or, for the bad id, be dropped), be counted in reqs_bad,
# and leave tapdisk serving; the data is untouched.  (td-rig bad checks
# each request and the counter; here also tap-ctl's view and the data.)
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
assert_eq 28 "$(tstat bad)" "reqs_bad in tap-ctl stats"
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
rc=0
wait "$RIG_PID" || rc=$?
RIG_PID=
assert_eq 1 "$rc" "exit status of td-rig interrupted while waiting"
assert_match "interrupted" "$(cat rig.err)"
assert_match "state=0x0 " "$("$TAP_CTL" list -p "$TD_PID") " "detached"
td_stop "$TD_PID"
TD_PID=
echo ok
