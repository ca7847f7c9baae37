#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity through a three-deep chain.  The base starts with known
# data (written by libvhd), then tapdisk writes at each stage: base, a
# snapshot of it, a snapshot of that; random reads and writes of 512 B to
# 1 MiB at depth 128 checked against td-rig's model, so reads that miss a
# child must find the parent's data.  Afterwards every level holds its
# stage's model (parents were opened read-only and are unchanged) for
# vhd-util, and for QEMU once flattened.  Finally a leaf grown past its
# parents' size reads zeros beyond them.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

need_cmd qemu-img
WRITE=$TOOLSDIR/vhd-write
need_built "$WRITE"
OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MB=64
SECTORS=$((MB * 2048))
MINOR=6

# Known data in the first 40 MiB of the base; the rest stays zeros.
mkrandom initial.raw $((40 * 1048576)) integrity-chain
run "$VHD_UTIL" create -n base.vhd -s $MB
run "$WRITE" base.vhd 0 initial.raw

td_start
log "tapdisk $TD_PID"
stage() {
	local img=$1
	shift
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/$img" \
		-d 128 --bs 512-1m "$@"
}

log "stage 1: the base"
stage base.vhd --rw randrw --ops "$OPS" --seed 41 --model m.model \
	--model-init file:initial.raw
cp m.model base.model
run "$VHD_UTIL" snapshot -n mid.vhd -p base.vhd
log "stage 2: a child of the base"
stage mid.vhd --rw randrw --ops "$OPS" --seed 42 --model m.model
cp m.model mid.model
run "$VHD_UTIL" snapshot -n leaf.vhd -p mid.vhd
log "stage 3: a grandchild"
stage leaf.vhd --rw rw70 --ops "$OPS" --flush-every 50 --fua-pct 20 \
	--seed 43 --model m.model
log "the whole chain read-only (-R)"
stage leaf.vhd -R --rw randread --ops "$OPS" --seed 44 --model m.model

log "every level holds its stage's model"
for level in base mid leaf; do
	model=$level.model
	[ $level = leaf ] && model=m.model
	run "$VHD_UTIL" check -n $level.vhd
	"$VHD_UTIL" read -n $level.vhd -r 0 -c $SECTORS >$level.raw ||
		die "vhd-util read of $level.vhd failed"
	run "$TD_RIG" verify --model $model --image $level.raw
done
# The stages differ, so the checks above could not pass by accident.
cmp -s base.raw mid.raw && die "stage 2 wrote nothing"
cmp -s mid.raw leaf.raw && die "stage 3 wrote nothing"
run "$VHD_UTIL" coalesce -n leaf.vhd -o flat.vhd
run qemu-img convert -f vpc -O raw flat.vhd qemu.raw
run "$TD_RIG" verify --model m.model --image qemu.raw

log "a leaf twice the size of its parents reads zeros past them"
run "$VHD_UTIL" snapshot -n big.vhd -p leaf.vhd
run "$VHD_UTIL" resize -n big.vhd -s $((2 * MB)) -j big.journal
# What tapdisk reads becomes the new model's initial content...
stage big.vhd --rw randread --ops 1 --model big.model --model-init read
# ...and must be the chain's data followed by zeros.
cp leaf.raw big-expected.raw
truncate -s $((2 * MB * 1048576)) big-expected.raw
run "$TD_RIG" verify --model big.model --image big-expected.raw
stage big.vhd --rw randrw --ops "$OPS" --seed 45 --model big.model
run "$VHD_UTIL" check -n big.vhd
"$VHD_UTIL" read -n big.vhd -r 0 -c $((2 * SECTORS)) >big.raw ||
	die "vhd-util read of big.vhd failed"
run "$TD_RIG" verify --model big.model --image big.raw

td_stop "$TD_PID"
TD_PID=
echo ok
