#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity on a raw file (aio driver): random reads and writes of
# 512 B to 1 MiB at depth 128, with flushes and FUA writes, every read
# checked against td-rig's model; afterwards the file itself must equal
# the model.  The file starts with random data, so reads of sectors never
# written are checked too; a second model starts from reading the disk.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MiB=1048576
SECTORS=$((96 * 2048))
MINOR=3

mkrandom initial.raw $((96 * MiB)) integrity-raw
cp initial.raw disk.raw
td_start
log "tapdisk $TD_PID"

rig() {
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "aio:$TMPDIR/disk.raw" "$@"
}

log "mixed sizes at depth 128, model from the initial file"
rig -d 128 --bs 512-1m --rw randrw --ops "$OPS" --flush-every 64 \
	--fua-pct 10 --seed 11 --model m.model \
	--model-init file:initial.raw
log "again on the same model: reads now see the first run's writes"
rig -d 128 --bs 512-1m --rw rw70 --ops "$OPS" --seed 12 --model m.model
log "small aligned requests, sequential writes then reads"
rig -d 64 --bs 4k --rw write --ops "$OPS" --seed 13 --model m.model
rig -d 64 --bs 64k --rw read --ops "$OPS" --seed 14 --model m.model

# The file alone, tapdisk out of the way, holds what the model says.
run "$TD_RIG" verify --model m.model --image disk.raw
run "$TD_RIG" expect --model m.model --base initial.raw --out expected.raw
cmp_files expected.raw disk.raw
# A model accepts nothing else: the untouched copy must fail.
expect_fail "$TD_RIG" verify --model m.model --image initial.raw
assert_match "does not match the model" "$FAIL_MSG"

log "a new model from reading the disk through tapdisk"
rig -d 32 --bs 512-256k --rw randrw --ops "$OPS" --seed 15 \
	--model m2.model --model-init read
run "$TD_RIG" verify --model m2.model --image disk.raw
[ "$(stat -c %s disk.raw)" -eq $((SECTORS * 512)) ] || die "disk.raw changed size"

td_stop "$TD_PID"
TD_PID=
echo ok
