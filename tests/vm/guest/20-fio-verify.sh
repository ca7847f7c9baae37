#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 2: fio random writes of 4 KiB to 1 MiB at depth 128 on a tapdev
# (dynamic VHD), every block verified with crc32c: no mismatch.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=fio-verify

size=192M
[ "$VMTEST_LONG" = 1 ] && size=768M
run vhd-util create -n /data/t2.vhd -s 1024
tap_create -a vhd:/data/t2.vhd
echo "+ fio randwrite 4k-1m depth 128 size $size, verify crc32c"
fio --name=verify --filename="$TAP_DEV" --ioengine=libaio --direct=1 \
	--iodepth=128 --rw=randwrite --bsrange=4k-1m --size=$size \
	--verify=crc32c --verify_fatal=1 --do_verify=1 \
	--exitall_on_error=1 >/tmp/fio2.log 2>&1
rc=$?
cat /tmp/fio2.log
[ $rc -eq 0 ] || die "fio exited with status $rc"
grep -qiE 'verify.*(fail|mismatch)|bad magic|crc32c.*(fail|wanted)' /tmp/fio2.log &&
	die "fio reports a verify failure"
grep -q 'err= 0' /tmp/fio2.log || die "fio reports an error"
w=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.write) ||
	die "no requests.write in tap-ctl stats"
r=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.read) ||
	die "no requests.read in tap-ctl stats"
m=$(stat_get "$TAP_PID" "$TAP_MINOR" inflight_max) ||
	die "no inflight_max in tap-ctl stats"
log "tapdisk saw $w writes, $r reads, at most $m in flight"
if [ "$w" -eq 0 ] || [ "$r" -eq 0 ]; then
	die "the I/O did not reach tapdisk"
fi
tap_destroy "$TAP_PID" "$TAP_MINOR"
run vhd-util check -n /data/t2.vhd
rm -f /data/t2.vhd
pass "$T"
