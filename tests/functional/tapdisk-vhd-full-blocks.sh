#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# How tapdisk's vhd driver allocates blocks in file space that was never
# written (past the end of the file at open): with an all-ones bitmap for
# a non-differencing image, the footer moved ahead of several blocks at
# once, and the space left over given back at close.
#  - a fresh image, 4 KiB writes scattered over 8 of its blocks, the image
#    held open by tap-ctl: space beyond the last block is reserved and the
#    image is clean meanwhile; after close the file ends right after the
#    last block, every new block's bitmap is all ones and its batmap bit
#    set, and vhd-util and QEMU read td-rig's model (zeros where never
#    written);
#  - kill -9 with space reserved: clean, and on the next run the blocks
#    put in that space (below the end of the file) get exact bitmaps,
#    while those beyond get full ones; the data matches the model;
#  - junk planted below the footer before the first open: blocks put
#    there get exact bitmaps, and sectors never written read as zeros;
#  - a differencing child: bitmaps stay exact, unwritten sectors come
#    from the parent.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL"
cd "$TMPDIR"
td_cleanup TD_PID

need_cmd qemu-img
WRITE=$TOOLSDIR/vhd-write
need_built "$WRITE"
OPS=${TAPDISK_TEST_OPS:-400}
[ "${VALGRIND:-0}" = 1 ] && OPS=150
MB=64
SECTORS=$((MB * 2048))
BLOCKS=$((MB / 2))
BLOCK_BYTES=$((2 * 1048576 + 512))	# bitmap and data
MINOR=7
head -c 512 /dev/zero | tr '\0' '\377' >ones.bm

# offsets IMG: "BLOCK BYTE-OFFSET" for every allocated block.
offsets() {
	"$VHD_UTIL" read -n "$1" -b 0 -c $BLOCKS |
		awk -F': ' '$3 != "not allocated" { print $2, $NF }'
}

# data_end IMG: where the last block ends.
data_end() {
	offsets "$1" | awk -v b=$BLOCK_BYTES 'BEGIN { e = 0 }
		$2 + b > e { e = $2 + b } END { print e }'
}

# full IMG BLOCK: whether the bitmap of BLOCK is all ones.
full() {
	"$VHD_UTIL" read -n "$1" -m "$2" >bm.out ||
		die "vhd-util read -m $2 of $1 failed"
	cmp -s bm.out ones.bm
}

# same IMG MODEL qemu|- [BASE]: vhd-util (and QEMU) read what the model
# (over the raw file BASE) says.
same() {
	local base=()
	[ -n "${4:-}" ] && base=(--base "$4")
	"$VHD_UTIL" read -n "$1" -r 0 -c $SECTORS >ours.raw ||
		die "vhd-util read -n $1 failed"
	run "$TD_RIG" verify --model "$2" --image ours.raw "${base[@]}"
	run "$TD_RIG" expect --model "$2" --out expected.raw "${base[@]}"
	cmp_files expected.raw ours.raw
	if [ "$3" = qemu ]; then
		run qemu-img convert -f vpc -O raw "$1" qemu.raw
		cmp_files expected.raw qemu.raw
	fi
	rm -f ours.raw qemu.raw expected.raw
}

# scatter MODEL SEED [RIG-ARGS]: 4 KiB writes, depth 32, no -a (the image
# is opened by tap-ctl) unless RIG-ARGS bring one.
scatter() {
	local model=$1 seed=$2
	shift 2
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -d 32 --bs 4k \
		--rw randwrite --ops "$OPS" --seed "$seed" --model "$model" "$@"
}

td_start
log "tapdisk $TD_PID"

log "fresh image, writes over its first 8 blocks, held open"
run "$VHD_UTIL" create -n fresh.vhd -s $MB
run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/fresh.vhd"
scatter fresh.model 71 --range $((8 * 4096))
n=$(offsets fresh.vhd | wc -l)
end=$(data_end fresh.vhd)
size=$(file_size fresh.vhd)
log "open: $n blocks, data ends at $end, the file at $size"
assert_eq 8 "$n" "blocks allocated"
[ "$size" -gt $((end + BLOCK_BYTES)) ] ||
	die "no space reserved past the last block ($size <= $end + a block)"
run "$VHD_UTIL" check -n fresh.vhd
td_close_detach "$TD_PID" $MINOR
assert_eq $((end + 512)) "$(file_size fresh.vhd)" "file size after close"
while read -r b off; do
	full fresh.vhd "$b" || die "block $b (at $off): bitmap not all ones"
	assert_eq "batmap for block $b: 1" \
		"$("$VHD_UTIL" read -n fresh.vhd -j "$b")"
done < <(offsets fresh.vhd)
run "$VHD_UTIL" check -n fresh.vhd
same fresh.vhd fresh.model qemu

log "kill -9 with space reserved, then more writes"
run "$VHD_UTIL" create -n crash.vhd -s $MB
run "$TAP_CTL" open -p "$TD_PID" -m $MINOR -a "vhd:$TMPDIR/crash.vhd"
scatter crash.model 72 --range $((8 * 4096))
kill -9 "$TD_PID"
{ wait "$TD_PID" || true; } 2>/dev/null
TD_PID=
run "$VHD_UTIL" check -n crash.vhd
same crash.vhd crash.model -
size=$(file_size crash.vhd)
offsets crash.vhd >before.list
[ "$size" -gt $(($(data_end crash.vhd) + BLOCK_BYTES)) ] ||
	die "no space was reserved at the kill"
td_start
scatter crash.model 73 -a "vhd:$TMPDIR/crash.vhd"
below=0 beyond=0
while read -r b off; do
	grep -q "^$b " before.list && continue
	if [ $((off + 512)) -lt "$size" ]; then
		! full crash.vhd "$b" ||
			die "block $b at $off, below the end ($size) at open: full bitmap"
		below=$((below + 1))
	else
		full crash.vhd "$b" ||
			die "block $b at $off, past the end ($size) at open: bitmap not full"
		beyond=$((beyond + 1))
	fi
done < <(offsets crash.vhd)
log "after the crash: $below new blocks in the reserved space, $beyond past it"
if [ $below -eq 0 ] || [ $beyond -eq 0 ]; then
	die "expected new blocks on both sides of the old end"
fi
run "$VHD_UTIL" check -n crash.vhd
same crash.vhd crash.model qemu

log "junk below the footer before the first open"
run "$VHD_UTIL" create -n junk.vhd -s $MB
size=$(file_size junk.vhd)
tail -c 512 junk.vhd >footer.bin
truncate -s $((size - 512)) junk.vhd
mkrandom junk.bin $((8 * BLOCK_BYTES)) full-blocks-junk
cat junk.bin footer.bin >>junk.vhd
size=$(file_size junk.vhd)
run "$VHD_UTIL" check -n junk.vhd
scatter junk.model 74 -a "vhd:$TMPDIR/junk.vhd"
below=0
while read -r b off; do
	if [ $((off + 512)) -lt "$size" ]; then
		! full junk.vhd "$b" || die "block $b at $off, in junk: full bitmap"
		below=$((below + 1))
	fi
done < <(offsets junk.vhd)
log "$below blocks put in the junk"
[ $below -gt 2 ] || die "only $below blocks in the junk"
[ "$(file_size junk.vhd)" -ge "$size" ] ||
	die "space below the footer at open was cut"
run "$VHD_UTIL" check -n junk.vhd
# Not QEMU: it reads an allocated block whole, bitmap or not.
same junk.vhd junk.model -

log "a differencing child over a base full of data"
mkrandom base.raw $((MB * 1048576)) full-blocks-base
run "$VHD_UTIL" create -n base.vhd -s $MB
run "$WRITE" base.vhd 0 base.raw
run "$VHD_UTIL" snapshot -n child.vhd -p base.vhd
scatter child.model 75 -a "vhd:$TMPDIR/child.vhd" \
	--model-init file:base.raw
n=0
while read -r b off; do
	! full child.vhd "$b" || die "child block $b: full bitmap"
	n=$((n + 1))
done < <(offsets child.vhd)
[ $n -gt 0 ] || die "nothing allocated in the child"
run "$VHD_UTIL" check -n child.vhd
same child.vhd child.model - base.raw

td_stop "$TD_PID"
TD_PID=
echo ok
