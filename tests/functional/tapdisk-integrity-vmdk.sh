#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity on VMDK images (vmdk driver) made by qemu-img, both
# subformats tapdisk writes (monolithicSparse, monolithicFlat): random
# reads and writes of 512 B to 1 MiB at depth 128 with flushes and FUA
# against td-rig's model, allocating grains as it goes, then again over
# allocated ones.  Afterwards 'qemu-img check' is clean and
# 'qemu-img convert -f vmdk -O raw' reads exactly the model.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
need_cmd qemu-img
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MB=96
SECTORS=$((MB * 2048))
MINOR=7

td_start
log "tapdisk $TD_PID"

# check_image IMG MODEL: qemu-img finds it clean and reads the model.
check_image() {
	run qemu-img check -f vmdk "$1"
	run qemu-img convert -f vmdk -O raw "$1" qemu.raw
	run "$TD_RIG" verify --model "$2" --image qemu.raw
	rm -f qemu.raw
}

for sub in monolithicSparse monolithicFlat; do
	img=$sub.vmdk
	run qemu-img create -q -f vmdk -o subformat=$sub $img ${MB}M
	rig() {
		run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/$img" "$@"
	}
	log "$sub: mixed sizes at depth 128 from an empty image"
	rig -d 128 --bs 512-1m --rw randrw --ops "$OPS" --flush-every 64 \
		--fua-pct 10 --seed 51 --model $sub.model
	check_image $img $sub.model
	log "$sub: again, over allocated and unallocated grains"
	rig -d 128 --bs 512-1m --rw rw70 --ops "$OPS" --seed 52 \
		--model $sub.model
	log "$sub: 4 KiB writes scattered everywhere, then read it all"
	rig -d 64 --bs 4k --align 4k --rw randwrite --ops "$OPS" --seed 53 \
		--model $sub.model
	rig -d 16 --bs 1m --rw read --ops $((SECTORS / 2048)) --seed 54 \
		--model $sub.model
	check_image $img $sub.model
done

# The sparse image grew as grains were allocated; the flat one did not.
size=$(file_size monolithicSparse.vmdk)
log "monolithicSparse.vmdk: $size bytes"
[ "$size" -gt $((1 << 20)) ] || die "no grain allocated in the sparse image"
assert_eq $((MB << 20)) "$(file_size monolithicFlat-flat.vmdk)" "flat extent size"

td_stop "$TD_PID"
TD_PID=
echo ok
