#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 5: a tapdisk dies (kill -9) under fio.
#  - recover: within the recovery window a new tapdisk takes over the tap
#    (tap-ctl spawn + attach + open): fio ends without an error and its
#    crc32c verify passes: the held requests were reissued.
#  - eio: no new tapdisk comes: the held I/O fails with EIO once the
#    window is over (not before), new I/O fails at once, nothing hangs.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap

param=/sys/module/blktap2/parameters/recovery_ms
[ -w $param ] || die "no writable $param"
default_ms=$(cat $param)
restore_param() {
	echo "$default_ms" >$param
}

# set_window MS: the window of the taps created from now on (the module
# parameter is their default).
set_window() {
	echo "$1" >$param || die "cannot set $param to $1"
}

# check_window MINOR MS: the tap's own sysfs value, when it has one.
check_window() {
	local f=/sys/class/blktap2/blktap$1/recovery_ms
	[ -e "$f" ] || return 0
	[ "$(cat "$f")" = "$2" ] || die "$f is $(cat "$f"), not $2"
}

# kill_tapdisk PID: kill -9 and wait until it has exited.
kill_tapdisk() {
	run kill -9 "$1"
	wait_until 30 proc_gone "$1" || die "tapdisk $1 did not die"
}

# take_over MINOR IMAGE-ARGS: a new tapdisk for the tap; sets NEW_PID.
take_over() {
	NEW_PID=$(tap-ctl spawn) || die "tap-ctl spawn failed"
	echo "+ tap-ctl spawn: $NEW_PID"
	case $NEW_PID in
	''|*[!0-9]*) die "tap-ctl spawn printed '$NEW_PID', not a pid" ;;
	esac
	run tap-ctl attach -p "$NEW_PID" -m "$1"
	VT_TAPS="$VT_TAPS $NEW_PID:$1"
	run tap-ctl open -p "$NEW_PID" -m "$1" -a "$2"
}

trap 'restore_param; vt_cleanup' EXIT

T=tapdisk-death-recover
size=64M
[ "$VMTEST_LONG" = 1 ] && size=256M
set_window 60000
run vhd-util create -n /data/t5.vhd -s 256
tap_create -a vhd:/data/t5.vhd
check_window "$TAP_MINOR" 60000
echo "+ fio randwrite 4k-256k depth 32 size $size, verify crc32c (background)"
fio --name=death --filename="$TAP_DEV" --ioengine=libaio --direct=1 \
	--iodepth=32 --rw=randwrite --bsrange=4k-256k --size=$size \
	--verify=crc32c --verify_fatal=1 --do_verify=1 >/tmp/fio5.log 2>&1 &
fio_pid=$!
BG_PIDS="$BG_PIDS $fio_pid"
# Kill it in the middle of the writes.
enough_writes() {
	[ "$(stat_get "$TAP_PID" "$TAP_MINOR" requests.write)" -ge 100 ]
}
wait_until 120 enough_writes || die "fio did not get going"
dmesg_mark
kill_tapdisk "$TAP_PID"
tap_forget "$TAP_PID" "$TAP_MINOR"
state=/sys/class/blktap2/blktap$TAP_MINOR/state
[ -e $state ] && log "state after the kill: $(cat $state)"
proc_gone $fio_pid && die "fio ended when tapdisk died: $(tail -n 5 /tmp/fio5.log)"
sleep 2
take_over "$TAP_MINOR" vhd:/data/t5.vhd
wait_pid $fio_pid 600
rc=$?
cat /tmp/fio5.log
[ $rc -ne 124 ] || die "fio still runs 600 s after a new tapdisk took over"
[ $rc -eq 0 ] || die "fio exited with status $rc after the takeover"
grep -qiE 'verify.*(fail|mismatch)|bad magic|crc32c.*(fail|wanted)' /tmp/fio5.log &&
	die "fio reports a verify failure"
grep -q 'err= 0' /tmp/fio5.log || die "fio reports an error"
w=$(stat_get "$NEW_PID" "$TAP_MINOR" requests.write)
log "the new tapdisk served $w writes"
[ "${w:-0}" -gt 0 ] || die "the new tapdisk got no writes"
dmesg | tail -n +$((DMESG_LINES + 1)) | grep -i 'error' | head -n 5
tap_destroy "$NEW_PID" "$TAP_MINOR"
run vhd-util check -n /data/t5.vhd
rm -f /data/t5.vhd
pass "$T"

T=tapdisk-death-eio
window=4
set_window $((window * 1000))
run truncate -s 32M /data/t5.raw
tap_create -a aio:/data/t5.raw
check_window "$TAP_MINOR" $((window * 1000))
run dd if=/dev/zero of="$TAP_DEV" bs=64k count=1 oflag=direct
kill_tapdisk "$TAP_PID"
tap_forget "$TAP_PID" "$TAP_MINOR"
t0=$(cut -d' ' -f1 /proc/uptime)
echo "+ dd read of $TAP_DEV, tapdisk dead (must fail after the window)"
dd if="$TAP_DEV" of=/dev/null bs=4k count=1 iflag=direct 2>/tmp/dd5.err &
dd_pid=$!
BG_PIDS="$BG_PIDS $dd_pid"
wait_pid $dd_pid $((window + 60))
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
log "held read ended after ${el}s with status $rc: $(cat /tmp/dd5.err)"
[ $rc -ne 124 ] || die "a read still hangs $((window + 60)) s after tapdisk died"
[ $rc -ne 0 ] || die "a read succeeded with no tapdisk"
grep -qi 'I/O error\|Input/output' /tmp/dd5.err || die "the read failed, but not with EIO: $(cat /tmp/dd5.err)"
# Held, not failed at once: the window is a lower bound (less 1 s for
# the time between the kill and the start of dd).
awk -v e="$el" -v w="$window" 'BEGIN { exit !(e >= w - 1) }' ||
	die "the read failed after ${el}s, before the ${window}s window ended"
state=/sys/class/blktap2/blktap$TAP_MINOR/state
[ -e $state ] && log "state after the window: $(cat $state)"
echo "+ dd write, after the window (must fail at once)"
timeout 30 dd if=/dev/zero of="$TAP_DEV" bs=4k count=1 oflag=direct 2>/tmp/dd5.err
rc=$?
[ $rc -ne 0 ] || die "a write succeeded with no tapdisk"
[ $rc -lt 124 ] || die "a write after the window hangs"
grep -qi 'I/O error\|Input/output' /tmp/dd5.err || die "the write failed, but not with EIO: $(cat /tmp/dd5.err)"
restore_param
# A new tapdisk can still take the tap over, and tap-ctl destroy it.
take_over "$TAP_MINOR" aio:/data/t5.raw
tap_destroy "$NEW_PID" "$TAP_MINOR"
rm -f /data/t5.raw
pass "$T"
