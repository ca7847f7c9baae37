#!/usr/bin/env bash
# vhd-util check accepts what we create and write: fixed, dynamic and
# differencing images, empty or written, and a 3-deep chain with -p -b.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

cd "$TMPDIR"

# valid IMAGE [OPTIONS...]: check prints "IMAGE is valid", exits 0, no stderr.
valid() {
	local img=$1 out
	shift
	echo "+ vhd-util check -n $img $*"
	out=$("$VHD_UTIL" check -n "$img" "$@" 2>err) ||
		{ cat err >&2; die "check failed on $img"; }
	[ ! -s err ] || { cat err >&2; die "check wrote to stderr"; }
	assert_eq "$img is valid" "$out" "check output"
}

mkrandom data $((5 << 20))

log "fresh images"
"$VHD_UTIL" create -n dyn.vhd -s 100
"$VHD_UTIL" create -n fixed.vhd -s 10 -r
"$VHD_UTIL" create -n big.vhd -s $((2040 << 10))
"$VHD_UTIL" create -n prealloc.vhd -s 20 -S 200
"$VHD_UTIL" snapshot -n diff.vhd -p dyn.vhd
for img in dyn.vhd fixed.vhd big.vhd prealloc.vhd diff.vhd; do
	valid "$img"
	valid "$img" -b -p
done

log "written images"
"$TOOLSDIR/vhd-write" dyn.vhd 0 data
"$TOOLSDIR/vhd-write" dyn.vhd 100000 data
"$TOOLSDIR/vhd-write" fixed.vhd 1 data
"$TOOLSDIR/vhd-write" big.vhd $(((2040 << 21) - 10240)) data
"$TOOLSDIR/vhd-write" prealloc.vhd 7 data
"$TOOLSDIR/vhd-write" diff.vhd 3 data
for img in dyn.vhd fixed.vhd big.vhd prealloc.vhd diff.vhd; do
	valid "$img"
	valid "$img" -b -p
done

log "stats"
out=$("$VHD_UTIL" check -n dyn.vhd -s)
echo "$out"
# 3 blocks of data at 0 (5 MiB) + 3 more at sector 100000 (spans 4 blocks).
assert_match '^dyn.vhd: secs allocated: 0x[0-9a-f]+ secs written: 0x5000 \([0-9.]+%\)$' \
	"$(head -n 1 <<<"$out")" "stats line"
out=$("$VHD_UTIL" check -n fixed.vhd -s)
assert_eq "fixed.vhd: secs allocated: 0x5000 secs written: 0x5000 (100.00%)" \
	"$out" "fixed stats"

log "a 3-deep chain, checked with its parents and bitmaps"
"$VHD_UTIL" create -n l0.vhd -s 40
"$TOOLSDIR/vhd-write" l0.vhd 0 data
"$VHD_UTIL" snapshot -n l1.vhd -p l0.vhd
"$TOOLSDIR/vhd-write" l1.vhd 8 data
"$VHD_UTIL" snapshot -n l2.vhd -p l1.vhd
"$TOOLSDIR/vhd-write" l2.vhd 20000 data
valid l2.vhd -p -b
valid l2.vhd -p -b -i -I -t
valid l1.vhd -p

log "a bad grandparent is found through the chain with -p"
printf 'X' | dd of=l0.vhd bs=1 seek=$(($(file_size l0.vhd) - 512)) conv=notrunc 2>/dev/null
valid l2.vhd
expect_fail "$VHD_UTIL" check -n l2.vhd -p
assert_match "parent .*l0.vhd: primary footer invalid" "$FAIL_MSG"

log "a parent replaced by another image: uuid mismatch, unless -I"
"$VHD_UTIL" create -n p.vhd -s 20
"$VHD_UTIL" snapshot -n c.vhd -p p.vhd
rm p.vhd
"$VHD_UTIL" create -n p.vhd -s 20
expect_fail "$VHD_UTIL" check -n c.vhd -p
assert_match "uuid" "$FAIL_MSG"
valid c.vhd -p -I

log "the batmap is optional: -B"
valid dyn.vhd -B -b

echo ok
