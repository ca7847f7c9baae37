#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity of the qcow driver: random reads and writes of 512 B to
# 1 MiB at depth 128, with flushes and FUA, checked against td-rig's
# model, on every kind of image qcow-create makes (plain, optimised
# allocation, preallocated), on a chain (qcow over qcow over raw), on
# images from img2qcow and on QEMU's compressed clusters.  Afterwards
# qemu-img and qcow2raw must both read what the model says, parents are
# unchanged, and the optimised image's tables sit right before their
# clusters.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
CREATE=$BINDIR/qcow-create
IMG2QCOW=$BINDIR/img2qcow
QCOW2RAW=$BINDIR/qcow2raw
need_built "$CREATE" "$IMG2QCOW" "$QCOW2RAW"
need_cmd qemu-img
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MB=64
MINOR=3

td_start
log "tapdisk $TD_PID"
stage() {
	local img=$1
	shift
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/$img" \
		-d 128 --bs 512-1m "$@"
}

# check IMAGE MODEL: qemu-img and qcow2raw both read the model.
check() {
	rm -f q.raw o.raw
	run qemu-img convert -f qcow -O raw "$1" q.raw
	run "$TD_RIG" verify --model "$2" --image q.raw
	run "$QCOW2RAW" o.raw "$1"
	cmp_files q.raw o.raw
}

for kind in plain optimised prealloc; do
	log "a $kind image"
	case $kind in
	plain) run "$CREATE" $MB $kind.qcow ;;
	optimised) run "$CREATE" -r $MB $kind.qcow ;;
	prealloc) run "$CREATE" -p $MB $kind.qcow ;;
	esac
	size0=$(file_size $kind.qcow)
	stage $kind.qcow --rw randrw --ops "$OPS" --flush-every 50 \
		--fua-pct 10 --seed 11 --model $kind.model
	stage $kind.qcow --rw randread --ops "$OPS" --seed 12 --model $kind.model
	check $kind.qcow $kind.model
	if [ $kind = prealloc ]; then
		# Everything was allocated at creation: no growth.
		assert_eq "$size0" "$(file_size $kind.qcow)" "preallocated size"
	fi
done

log "optimised allocation: each new table is followed by its clusters"
# Sequential 4 KiB writes over two tables' ranges: with -r the file
# holds two tables and all of their clusters, without it only what was
# written; both read back the same.
run "$CREATE" -r 16 opt.qcow
run "$CREATE" 16 sparse.qcow
for img in opt sparse; do
	stage $img.qcow --rw write --bs 4k --range 1024 --ops 256 \
		--model $img.model
	check $img.qcow $img.model
done
opt=$(file_size opt.qcow)
sparse=$(file_size sparse.qcow)
log "file sizes: optimised $opt, sparse $sparse"
[ "$opt" -ge $((2 * 1024 * 1024)) ] ||
	die "optimised image did not allocate whole tables ($opt bytes)"
[ "$sparse" -lt $((1024 * 1024)) ] ||
	die "sparse image grew more than its writes ($sparse bytes)"

log "a chain: qcow over qcow over raw"
mkrandom base.raw $((MB * 1048576)) integrity-qcow
cp base.raw base.orig
run "$CREATE" $MB mid.qcow base.raw
stage mid.qcow --rw randrw --ops "$OPS" --seed 21 --model mid.model \
	--model-init file:base.raw
cp mid.model mid.saved
cp mid.qcow mid.orig
run "$CREATE" $MB leaf.qcow mid.qcow
stage leaf.qcow --rw rw70 --ops "$OPS" --flush-every 40 --fua-pct 20 \
	--seed 22 --model mid.model
stage leaf.qcow -R --rw randread --ops "$OPS" --seed 23 --model mid.model
check leaf.qcow mid.model
check mid.qcow mid.saved
cmp_files base.orig base.raw
cmp_files mid.orig mid.qcow

log "img2qcow of a raw image with holes, read and written"
mkrandom part.raw $((8 * 1048576)) img2qcow
truncate -s $((MB * 1048576)) part.raw
dd if=part.raw of=part.raw bs=1M count=4 seek=40 conv=notrunc status=none
run "$IMG2QCOW" conv.qcow part.raw
[ "$(file_size conv.qcow)" -lt $((14 * 1048576)) ] ||
	die "img2qcow did not skip the zero clusters"
stage conv.qcow --rw randread --ops "$OPS" --seed 31 --model conv.model \
	--model-init file:part.raw
stage conv.qcow --rw randrw --ops "$OPS" --seed 32 --model conv.model
check conv.qcow conv.model

log "QEMU's compressed clusters read back"
{ head -c 3000000 /dev/zero | tr '\0' 'a'; head -c 2000000 part.raw; } >cz.raw
truncate -s $((MB * 1048576)) cz.raw
# qemu-img 7.2 exits 1 after writing a compressed qcow completely (its
# final empty compressed write is refused): check the image instead.
qemu-img convert -c -f raw -O qcow cz.raw cz.qcow || true
qemu-img convert -f qcow -O raw cz.qcow cz.back
cmp_files cz.raw cz.back
[ "$(file_size cz.qcow)" -lt 3000000 ] || die "no compressed clusters"
stage cz.qcow -R --rw randread --ops "$OPS" --seed 41 --model cz.model \
	--model-init file:cz.raw
run "$QCOW2RAW" cz.out cz.qcow
cmp_files cz.raw cz.out

td_stop "$TD_PID"
TD_PID=
echo ok
