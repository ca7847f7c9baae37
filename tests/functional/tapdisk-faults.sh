#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The retry policy, through test-only fault injection (tapdisk runs with
# TAPDISK_TEST_FAULTS=1; td-rig fault sends TD_CTL_FAULT).
#  - A transient fault (EAGAIN, EBUSY) shorter than the request timeout is
#    invisible to the client: no request fails, the data is right, and the
#    retries show in 'tap-ctl stats'.
#  - A persistent transient fault fails the requests once the timeout
#    (-t 3) has passed; none hangs, and clearing the fault brings I/O back.
#  - Permanent errors (ENOSPC, EIO) fail at once, without retries.
#  - Where EIO is configured transient (TAPDISK_RETRY_EIO=1, as on NFS
#    soft mounts) a short EIO fault is retried away.
#  - The watchdog reports a request that makes no progress for 10 s.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

MB=32
MINOR=9
IMG=$TMPDIR/disk.raw
truncate -s $((MB * 1048576)) "$IMG"

td_start TAPDISK_TEST_FAULTS=1
log "tapdisk $TD_PID"

# A ring carries one td-rig run.  session TIMEOUT ARGS...: tap-ctl opens
# the image (so that stats can be read after td-rig is done) and td-rig
# runs ARGS; end: close, and detach the ring.  Stats are cumulative.
session() {
	local t=$1
	shift
	run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "aio:$IMG" -t "$t"
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR --timeout 30 --model m.model "$@"
}
end() {
	td_close_detach "$TD_PID" $MINOR
}
fault() {
	run "$TD_RIG" fault -p "$TD_PID" -m $MINOR "$@"
}
# counter NAME: NAME from the disk's stats (see td_stat).
counter() {
	td_stat "$TD_PID" $MINOR "$1"
}

session 30 -d 16 --bs 4k-64k --rw randwrite --ops 300 --seed 51
assert_eq 0 "$(counter retries)" "retries without faults"
end

log "a transient fault on writes, then on reads: invisible"
fault -c 3 -e EAGAIN -o write
session 30 -d 16 --bs 4k-64k --rw randrw --ops 300 --seed 52
end
fault -c 3 -e EBUSY -o read
session 30 -d 16 --bs 4k-64k --rw randread --ops 300 --seed 53
retries=$(counter retries)
transient=$(counter errors_transient)
log "retries=$retries errors_transient=$transient"
[ "$retries" -ge 6 ] || die "expected at least 6 retries, stats say $retries"
[ "$transient" -ge 6 ] || die "expected 6 transient errors, stats say $transient"
assert_eq 0 "$(counter errors)" "requests failed"
end

log "a persistent transient fault: errors after the 3 s timeout, no hang"
fault -c 1000000 -e EAGAIN -o write
start=$SECONDS
session 3 -d 8 --bs 4k --rw randwrite --ops 8 --seed 54 --expect-errors
log "8 writes failed after $((SECONDS - start)) s"
assert_eq 8 "$(counter errors)" "failed requests"
[ "$(counter timeouts)" -ge 1 ] || die "no timeout counted"
end
# Reads are not affected by a write fault.
session 3 -d 8 --bs 4k-64k --rw randread --ops 100 --seed 55
end
log "cleared: writes work again"
fault -c 0
session 3 -d 16 --bs 4k-64k --rw randrw --ops 300 --seed 56
assert_eq 8 "$(counter errors)" "failed requests"
retries=$(counter retries)
end

log "permanent errors fail at once"
fault -c 4 -e ENOSPC -o write
session 30 -d 1 --bs 4k --rw randwrite --ops 20 --seed 57 --expect-errors
assert_eq 12 "$(counter errors)" "failed requests"
end
fault -c 2 -e EIO -o read
session 30 -d 1 --bs 4k --rw randread --ops 20 --seed 58 --expect-errors
assert_eq 14 "$(counter errors)" "failed requests"
end
fault -c 1 -e EIO -o flush
session 30 -d 4 --bs 4k --rw randwrite --ops 40 --flush-every 5 --seed 59 \
	--expect-errors
assert_eq 15 "$(counter errors)" "failed requests"
assert_eq "$retries" "$(counter retries)" "retries of permanent errors"
[ "$(counter errors_permanent)" -ge 7 ] || die "permanent errors not counted"
end
log "and the disk still holds the model"
session 30 -d 16 --bs 64k --rw read --ops $((MB * 16)) --seed 60
end

expect_fail "$TD_RIG" fault -p "$TD_PID" -m $MINOR -c 1 -e 0
td_stop "$TD_PID"
TD_PID=

log "EIO configured as transient: a short EIO fault is invisible"
td_start TAPDISK_TEST_FAULTS=1 TAPDISK_RETRY_EIO=1
fault -c 3 -e EIO -o write
session 30 -d 16 --bs 4k-64k --rw randrw --ops 300 --seed 61
assert_eq 0 "$(counter errors)" "requests failed"
[ "$(counter retries)" -ge 3 ] || die "EIO was not retried"
end
grep -q 'EIO is treated as transient' "$TMPDIR/tapdisk.$TD_PID.log" ||
	die "tapdisk did not log the EIO policy"

log "the watchdog: a write retried for 12 s is reported, then times out"
fault -c 1000000 -e EAGAIN -o write
session 12 -d 1 --bs 4k --rw randwrite --ops 1 --seed 62 --expect-errors
[ "$(counter stalls)" -ge 1 ] || die "the watchdog reported no stall"
grep -q 'made no progress for' "$TMPDIR/tapdisk.$TD_PID.log" ||
	die "no watchdog line in tapdisk's log"
assert_eq 1 "$(counter timeouts)" "timeouts"
fault -c 0
end
td_stop "$TD_PID"
TD_PID=

log "without TAPDISK_TEST_FAULTS, fault injection is refused"
td_start
run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "aio:$IMG"
expect_fail "$TD_RIG" fault -p "$TD_PID" -m $MINOR -c 1 -e EIO
run "$TAP_CTL" close -p "$TD_PID" -m $MINOR
td_stop "$TD_PID"
TD_PID=
echo ok
