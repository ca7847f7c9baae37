#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data integrity on VHD images (vhd driver): random reads and writes of
# 512 B to 1 MiB at depth 128 against td-rig's model, on a dynamic image
# (allocating blocks as it goes, then rewriting them) and a fixed one.
# Afterwards the image is clean for 'vhd-util check', and both
# 'vhd-util read' and 'qemu-img convert -f vpc' read exactly the model.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

need_cmd qemu-img
OPS=${TAPDISK_TEST_OPS:-3000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MB=128
SECTORS=$((MB * 2048))
MINOR=5

td_start
log "tapdisk $TD_PID"

# check_image IMG MODEL: clean, and both readers see the model.
check_image() {
	run "$VHD_UTIL" check -n "$1"
	"$VHD_UTIL" read -n "$1" -r 0 -c $SECTORS >ours.raw ||
		die "vhd-util read -n $1 failed"
	run "$TD_RIG" verify --model "$2" --image ours.raw
	run qemu-img convert -f vpc -O raw "$1" qemu.raw
	run "$TD_RIG" verify --model "$2" --image qemu.raw
	run "$TD_RIG" expect --model "$2" --out expected.raw
	cmp_files expected.raw ours.raw
	rm -f ours.raw qemu.raw expected.raw
}

for kind in dynamic fixed; do
	img=$kind.vhd
	if [ $kind = fixed ]; then
		run "$VHD_UTIL" create -n $img -s $MB -r
	else
		run "$VHD_UTIL" create -n $img -s $MB
	fi
	rig() {
		run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/$img" "$@"
	}
	log "$kind: mixed sizes at depth 128 from an empty image"
	rig -d 128 --bs 512-1m --rw randrw --ops "$OPS" --flush-every 64 \
		--fua-pct 10 --seed 21 --model $kind.model
	check_image $img $kind.model
	log "$kind: again, on allocated and unallocated blocks"
	rig -d 128 --bs 512-1m --rw rw70 --ops "$OPS" --seed 22 \
		--model $kind.model
	log "$kind: 4 KiB writes scattered over every block, then read all"
	rig -d 32 --bs 4k --align 4k --rw randwrite --ops "$OPS" --seed 23 \
		--model $kind.model
	rig -d 16 --bs 1m --rw read --ops $((SECTORS / 2048)) --seed 24 \
		--model $kind.model
	check_image $img $kind.model
done

# A dynamic image after all that allocated blocks; a fixed one never grows.
alloc=$("$VHD_UTIL" query -n dynamic.vhd -a)
log "dynamic.vhd: $alloc blocks allocated"
[ "$alloc" -gt 0 ] || die "no block allocated in dynamic.vhd"

td_stop "$TD_PID"
TD_PID=
echo ok
