#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# qcow images both ways with QEMU: images made by 'qemu-img create -f
# qcow' (plain, over a qcow backing file, over a raw one) and written by
# qemu-io read back through tapdisk exactly; tapdisk's writes into them
# read back the same through qemu-img; QEMU writing after tapdisk, into
# tapdisk's own images too (blktap extension, optimised allocation), is
# read back by tapdisk.  Backing files are never changed.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
CREATE=$BINDIR/qcow-create
need_built "$CREATE"
need_cmd qemu-img qemu-io
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-2000}
[ "${VALGRIND:-0}" = 1 ] && OPS=200
MiB=1048576
MB=32
MINOR=2

# put RAW OFFSET_BYTES LEN_BYTES BYTE: what qemu-io 'write -P' does.
put() {
	head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" |
		dd of="$1" bs=512 seek=$(($2 / 512)) conv=notrunc status=none
}

# qemu_write IMAGE RAW OFFSET LEN BYTE: write with qemu-io, and the same
# into RAW, the expected disk.
qemu_write() {
	run qemu-io -f qcow -c "write -P $5 $3 $4" "$1" >/dev/null
	put "$2" "$(numfmt --from=iec "${3^^}")" "$(numfmt --from=iec "${4^^}")" "$5"
}

# tapdisk_rw IMAGE RAW SEED: tapdisk reads all of IMAGE as RAW says,
# then reads and writes at random; RAW becomes the disk after that, and
# qemu-img must read the same.
tapdisk_rw() {
	local img=$1 raw=$2 seed=$3
	rm -f m.model
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/$img" \
		-R --rw read --bs 1m --ops $((MB)) --model m.model \
		--model-init "file:$raw"
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "qcow:$TMPDIR/$img" \
		-d 64 --bs 512-256k --rw randrw --ops "$OPS" --fua-pct 10 \
		--flush-every 50 --seed "$seed" --model m.model
	run "$TD_RIG" expect --model m.model --out "$raw.new" --base "$raw"
	mv "$raw.new" "$raw"
	rm -f qemu.raw
	run qemu-img convert -f qcow -O raw "$img" qemu.raw
	cmp_files "$raw" qemu.raw
}

td_start
log "tapdisk $TD_PID"

log "a plain image from qemu-img, written by qemu-io"
run qemu-img create -q -f qcow plain.qcow ${MB}M
truncate -s $((MB * MiB)) plain.raw
qemu_write plain.qcow plain.raw 0 3M 0x5a
qemu_write plain.qcow plain.raw 7M 512k 0x11
qemu_write plain.qcow plain.raw 102400 4096 0x22
qemu_write plain.qcow plain.raw $((MB * MiB - 4096)) 4096 0x33
tapdisk_rw plain.qcow plain.raw 1
log "QEMU writes after tapdisk: new clusters go after ours"
qemu_write plain.qcow plain.raw 20M 1M 0x44
qemu_write plain.qcow plain.raw 1536 1024 0x55
tapdisk_rw plain.qcow plain.raw 2

log "over a qcow backing file"
run qemu-img create -q -f qcow base.qcow ${MB}M
truncate -s $((MB * MiB)) chain.raw
qemu_write base.qcow chain.raw 0 8M 0x61
qemu_write base.qcow chain.raw 16M 64k 0x62
cp base.qcow base.orig
run qemu-img create -q -f qcow -b base.qcow -F qcow child.qcow
qemu_write child.qcow chain.raw 4M 1M 0x63
qemu_write child.qcow chain.raw 1536 512 0x64
tapdisk_rw child.qcow chain.raw 3
qemu_write child.qcow chain.raw 10M 2M 0x65
tapdisk_rw child.qcow chain.raw 4
cmp_files base.orig base.qcow

log "over a raw backing file"
mkrandom rawbase.raw $((MB * MiB)) qcow-interop
cp rawbase.raw rawbase.orig
cp rawbase.raw overlay.raw
run qemu-img create -q -f qcow -b rawbase.raw -F raw overlay.qcow
qemu_write overlay.qcow overlay.raw 1M 1M 0x71
tapdisk_rw overlay.qcow overlay.raw 5
cmp_files rawbase.orig rawbase.raw

log "QEMU writes into tapdisk's images"
for opt in "" -r; do
	rm -f ours.qcow ours.raw
	run "$CREATE" $opt $MB ours.qcow
	truncate -s $((MB * MiB)) ours.raw
	tapdisk_rw ours.qcow ours.raw 6
	qemu_write ours.qcow ours.raw 12M 3M 0x7a
	qemu_write ours.qcow ours.raw 512 512 0x7b
	tapdisk_rw ours.qcow ours.raw 7
done

td_stop "$TD_PID"
TD_PID=
echo ok
