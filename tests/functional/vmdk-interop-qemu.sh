#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# VMDK interop with QEMU, both ways, for monolithicSparse (also with
# zeroed_grain=on, where qemu-io's write -z makes zeroed-grain GTEs) and
# monolithicFlat:
#  - qemu-io writes patterns, tapdisk reads back exactly what qemu-img
#    convert reads;
#  - tapdisk then writes over it at random; 'qemu-img check' is clean,
#    'qemu-img convert -f vmdk -O raw' reads tapdisk's model, and qemu-io
#    can still write to it (it then reads its own pattern back);
#  - in the sparse images both copies of every grain table are equal.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
need_cmd qemu-img qemu-io
cd "$TMPDIR"
td_cleanup TD_PID

OPS=${TAPDISK_TEST_OPS:-2000}
[ "${VALGRIND:-0}" = 1 ] && OPS=300
MB=40
MINOR=8

# u64 FILE OFFSET: a little-endian 64-bit field.
u64() {
	od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '
}
u32() {
	od -A n -t u4 -j "$2" -N 4 "$1" | tr -d ' '
}

# gts_agree IMG: every grain table equals its redundant copy.
gts_agree() {
	local img=$1 cap grain gtes rgd gd n i a b
	cap=$(u64 "$img" 12)
	grain=$(u64 "$img" 20)
	gtes=$(u32 "$img" 44)
	rgd=$(u64 "$img" 48)
	gd=$(u64 "$img" 56)
	n=$(((cap + grain * gtes - 1) / (grain * gtes)))
	[ "$rgd" -gt 0 ] || die "$img: no redundant grain directory"
	for ((i = 0; i < n; i++)); do
		a=$(u32 "$img" $((gd * 512 + 4 * i)))
		b=$(u32 "$img" $((rgd * 512 + 4 * i)))
		[ "$a" -gt 0 ] && [ "$b" -gt 0 ] || die "$img: table $i missing"
		cmp <(dd if="$img" bs=512 skip="$a" count=$((gtes / 128)) 2>/dev/null) \
			<(dd if="$img" bs=512 skip="$b" count=$((gtes / 128)) 2>/dev/null) >/dev/null ||
			die "$img: grain table $i differs from its redundant copy"
	done
	log "$img: $n grain tables agree with their copies"
}

td_start
log "tapdisk $TD_PID"

for kind in sparse zeroed flat; do
	img=$kind.vmdk
	case $kind in
	sparse) run qemu-img create -q -f vmdk $img ${MB}M ;;
	zeroed) run qemu-img create -q -f vmdk -o zeroed_grain=on $img ${MB}M ;;
	flat) run qemu-img create -q -f vmdk -o subformat=monolithicFlat $img ${MB}M ;;
	esac
	log "$kind: qemu-io writes"
	run qemu-io -f vmdk -c 'write -P 0xab 0 1M' -c 'write -P 0x5c 3M 4k' \
		-c 'write -P 0x11 7340544 1536' -c 'write -P 0xee 20M 256k' \
		-c 'write -z 20M 128k' -c 'write -P 0x77 39M 1M' $img >/dev/null
	run qemu-img convert -f vmdk -O raw $img qemu-before.raw
	log "$kind: tapdisk reads what qemu wrote"
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/$img" -d 16 \
		--bs 1m --rw read --ops $MB --model-init file:qemu-before.raw \
		--model $kind.model
	# Patterns sit where qemu-io put them (not just "equal to qemu").
	assert_eq "$(head -c 1048576 /dev/zero | tr '\0' '\253' | md5sum)" \
		"$(head -c 1048576 qemu-before.raw | md5sum)" "qemu's first MiB"
	log "$kind: tapdisk writes at random"
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/$img" -d 64 \
		--bs 512-256k --rw randrw --ops "$OPS" --fua-pct 20 \
		--flush-every 32 --seed 61 --model $kind.model
	run qemu-img check -f vmdk $img
	run qemu-img convert -f vmdk -O raw $img qemu-after.raw
	run "$TD_RIG" verify --model $kind.model --image qemu-after.raw \
		--base qemu-before.raw
	[ $kind = flat ] || gts_agree $img
	log "$kind: qemu-io still writes and reads it"
	run qemu-io -f vmdk -c 'write -P 0x42 30M 192k' \
		-c 'read -P 0x42 30M 192k' $img >/dev/null
	run qemu-img check -f vmdk $img
	rm -f qemu-before.raw qemu-after.raw
done

td_stop "$TD_PID"
TD_PID=
echo ok
