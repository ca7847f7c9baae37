#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# VM test 3: large requests stay large.  The queue takes 1 MiB requests and
# at least 128 of them, and one 1 MiB direct write (or read) reaches
# tapdisk as one request (its requests counter moves by exactly one).
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=large-request

run truncate -s 64M /data/t3.raw
tap_create -a aio:/data/t3.raw
q=/sys/block/tapdev$TAP_MINOR/queue
for f in max_hw_sectors_kb max_sectors_kb max_segments nr_requests \
	logical_block_size physical_block_size write_cache discard_max_bytes; do
	[ -e $q/$f ] && log "$f = $(cat $q/$f)"
done
[ "$(cat $q/max_hw_sectors_kb)" -ge 1024 ] ||
	die "max_hw_sectors_kb is $(cat $q/max_hw_sectors_kb), under 1024"
[ "$(cat $q/max_sectors_kb)" -ge 1024 ] ||
	die "max_sectors_kb is $(cat $q/max_sectors_kb), under 1024"
[ "$(cat $q/nr_requests)" -ge 128 ] ||
	die "nr_requests is $(cat $q/nr_requests), under 128"

dd if=/dev/urandom of=/tmp/1m bs=1M count=1 2>/dev/null
w0=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.write) || die "no requests.write"
run dd if=/tmp/1m of="$TAP_DEV" bs=1M count=1 seek=3 oflag=direct
w1=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.write) || die "no requests.write"
log "requests.write $w0 -> $w1"
[ $((w1 - w0)) -eq 1 ] ||
	die "a 1 MiB direct write reached tapdisk as $((w1 - w0)) requests"

r0=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.read) || die "no requests.read"
run dd if="$TAP_DEV" of=/tmp/1m.back bs=1M count=1 skip=3 iflag=direct
r1=$(stat_get "$TAP_PID" "$TAP_MINOR" requests.read) || die "no requests.read"
log "requests.read $r0 -> $r1"
[ $((r1 - r0)) -eq 1 ] ||
	die "a 1 MiB direct read reached tapdisk as $((r1 - r0)) requests"
cmp /tmp/1m /tmp/1m.back || die "the 1 MiB read back differs"
tap_destroy "$TAP_PID" "$TAP_MINOR"
rm -f /data/t3.raw
pass "$T"
