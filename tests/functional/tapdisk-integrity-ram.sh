#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity on RAM disks (ram driver): random reads and writes of
# 512 B to 1 MiB at depth 128, with flushes and FUA, against td-rig's
# model, on an empty named disk and on one loaded from a raw image.  The
# image file stays untouched without "save".
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MINOR=6
# The shared memory objects live in the test's directory.
export BLKTAP_RAM_DIR=$TMPDIR/shm
mkdir "$BLKTAP_RAM_DIR"

td_start
log "tapdisk $TD_PID"

rig() {
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR "$@"
}

log "empty named disk: mixed sizes at depth 128"
rig -a "ram:$BLKTAP_RAM_DIR/integ?size=64M" -d 128 --bs 512-1m --rw randrw --ops "$OPS" \
	--flush-every 64 --fua-pct 10 --seed 31 --model named.model
# The last user closed it: the object is gone, and a new one starts empty.
[ -z "$(ls -A "$BLKTAP_RAM_DIR")" ] || die "left behind: $(ls "$BLKTAP_RAM_DIR")"
rig -a "ram:$BLKTAP_RAM_DIR/integ?size=64M" -d 16 --bs 1m --rw read --ops 64 --seed 32 \
	--model zero.model

log "disk loaded from a raw image"
mkrandom disk.raw $((32 << 20)) ram-integrity
cp disk.raw disk.orig
rig -a "ram:$TMPDIR/disk.raw" -d 128 --bs 512-1m --rw randrw --ops "$OPS" \
	--flush-every 64 --fua-pct 10 --seed 33 --model-init file:disk.orig \
	--model file.model
rig -a "ram:$TMPDIR/disk.raw" -d 16 --bs 1m --rw read --ops 32 --seed 34 \
	--model-init file:disk.orig --model fresh.model
cmp_files disk.orig disk.raw
[ -z "$(ls -A "$BLKTAP_RAM_DIR")" ] || die "left behind: $(ls "$BLKTAP_RAM_DIR")"

td_stop "$TD_PID"
TD_PID=
echo ok
