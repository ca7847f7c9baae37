#!/usr/bin/env bash
# vhd-util coalesce: into the parent, into a named ancestor (-a), flattened
# into a new image (-o), sparse (-s), progress (-p), and its errors.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
WRITE=$TOOLSDIR/vhd-write
CAT=$TOOLSDIR/vhd-cat
{ [ -x "$WRITE" ] && [ -x "$CAT" ]; } || die "test tools not built in $TOOLSDIR"
cd "$TMPDIR"

MiB=1048576
mkrandom r3m $((3 * MiB)) r3m
mkrandom r2m $((2 * MiB)) r2m
mkrandom r1m $MiB r1m
mkrandom r4k 4096 r4k
mkrandom r512k $((512 * 1024)) r512k
head -c $((64 * 1024)) /dev/zero >z64k
head -c $((2 * MiB)) /dev/zero >z2m

# view IMAGE: the disk as read through the chain
view() { "$CAT" "$1"; }

# A three-deep chain: base <- mid <- leaf, each with data; mid has a whole
# block written (its batmap bit is set), which leaf partly overwrites.
make_chain() {
	rm -f base.vhd mid.vhd leaf.vhd
	run "$VHD_UTIL" create -n base.vhd -s 20
	run "$WRITE" base.vhd 0 r3m
	run "$WRITE" base.vhd 20000 r1m
	run "$VHD_UTIL" snapshot -e -n mid.vhd -p base.vhd
	run "$WRITE" mid.vhd 2048 r1m
	run "$WRITE" mid.vhd 8192 r2m          # block 2, whole
	run "$WRITE" mid.vhd 4000 z64k
	run "$VHD_UTIL" snapshot -e -n leaf.vhd -p mid.vhd
	run "$WRITE" leaf.vhd 4090 r4k         # across the block 0/1 boundary
	run "$WRITE" leaf.vhd 9000 r512k       # inside mid's full block 2
	run "$WRITE" leaf.vhd 16000 z64k       # zeros over nothing
	run "$WRITE" leaf.vhd 21000 z64k       # zeros over base's data
	run "$WRITE" leaf.vhd 30000 r4k
}

log "default: coalesce into the immediate parent"
make_chain
view leaf.vhd >leaf.view
view base.vhd >base.view
cp base.vhd base.orig
run "$VHD_UTIL" coalesce -n leaf.vhd
view mid.vhd >mid.after
cmp_files leaf.view mid.after
cmp_files base.orig base.vhd
view leaf.vhd >leaf.after
cmp_files leaf.view leaf.after

log "-a: coalesce into the grandparent across an intermediate"
make_chain
view leaf.vhd >leaf.view
view mid.vhd >mid.view
out=$("$VHD_UTIL" read -n mid.vhd -j 2 2>&1)
assert_match ': 1$' "$out" "mid's block 2 is full before"
run "$VHD_UTIL" coalesce -n leaf.vhd -a base.vhd
out=$("$VHD_UTIL" read -n mid.vhd -j 2 2>&1)
assert_match ': 0$' "$out" "mid's block 2 is no longer full"
# mid no longer hides what moved into base: mid now reads as leaf did
# (its block 2 was full: its batmap bit must have been cleared).
view mid.vhd >mid.after
cmp_files leaf.view mid.after
for img in base.vhd mid.vhd leaf.vhd; do
	run "$VHD_UTIL" check -n "$img" -b
done
view leaf.vhd >leaf.after
cmp_files leaf.view leaf.after
# base itself now holds leaf's sectors: compare a region leaf wrote
"$CAT" --leaf-only base.vhd | cmp -s - base.view &&
	die "base did not change"
cmp <(dd if=leaf.view bs=512 skip=9000 count=1024 status=none) \
    <("$CAT" --leaf-only base.vhd | dd bs=512 skip=9000 count=1024 status=none iflag=fullblock) ||
	die "base does not hold leaf's data"

log "-a naming the immediate parent is the default coalesce"
make_chain
view leaf.vhd >leaf.view
run "$VHD_UTIL" coalesce -n leaf.vhd -a mid.vhd
view mid.vhd >mid.after
cmp_files leaf.view mid.after

log "-o: flatten the chain into a new image"
make_chain
view leaf.vhd >leaf.view
run "$VHD_UTIL" coalesce -n leaf.vhd -o flat.vhd
view flat.vhd >flat.view
cmp_files leaf.view flat.view
"$CAT" --leaf-only flat.vhd >flat.leaf
cmp_files leaf.view flat.leaf          # standalone: no parent
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img convert -f vpc -O raw flat.vhd flat.raw
	cmp_files leaf.view flat.raw
fi
# All-zero blocks are not allocated: only blocks 0, 1, 2, 4, 5 and 7 (of
# 10) hold data, so six 2 MiB blocks plus metadata.
size=$(file_size flat.vhd)
[ "$size" -lt $((14 * MiB)) ] || die "flat.vhd is $size bytes: zero blocks were written"

log "-o keeps a size that is not a multiple of 2 MiB"
head -c $((5 * MiB + 1536)) /dev/zero >odd.raw
dd if=r1m of=odd.raw bs=512 seek=4096 conv=notrunc status=none
run "$VHD_UTIL" snapshot -n odd.vhd -p odd.raw -m
run "$WRITE" odd.vhd 10 r4k
view odd.vhd >odd.view
assert_eq $((5 * MiB + 1536)) "$(file_size odd.view)" "odd chain size"
run "$VHD_UTIL" coalesce -n odd.vhd -o oddflat.vhd
view oddflat.vhd >oddflat.view
cmp_files odd.view oddflat.view

log "default coalesce into a raw parent"
cp odd.raw odd.orig
run "$VHD_UTIL" coalesce -n odd.vhd
cmp_files odd.view odd.raw

log "default coalesce into a fixed parent"
run "$VHD_UTIL" create -n fixed.vhd -s 8 -r
run "$WRITE" fixed.vhd 0 r3m
run "$VHD_UTIL" snapshot -n fchild.vhd -p fixed.vhd
run "$WRITE" fchild.vhd 3000 r1m
run "$WRITE" fchild.vhd 16000 r4k
view fchild.vhd >fchild.view
run "$VHD_UTIL" coalesce -n fchild.vhd
view fixed.vhd >fixed.after
cmp_files fchild.view fixed.after

log "data past the parent's end is refused, not cut off"
run "$VHD_UTIL" create -n small.vhd -s 20
run "$VHD_UTIL" snapshot -e -n big.vhd -p small.vhd -S 40
if "$VHD_UTIL" resize -n big.vhd -s 30 -f; then
	run "$WRITE" big.vhd 1000 r4k
	# nothing past the parent's end yet: fine
	run "$VHD_UTIL" coalesce -n big.vhd
	cp small.vhd small.before
	run "$WRITE" big.vhd $((25 * 2048)) r4k
	expect_fail "$VHD_UTIL" coalesce -n big.vhd
	assert_match 'past the end' "$FAIL_MSG"
	cmp_files small.before small.vhd
else
	log "resize -f did not work: skipping the larger-child case"
fi

log "-s: zeros are written only where they hide data"
make_chain
view leaf.vhd >leaf.view
cp mid.vhd mid.orig
cp leaf.vhd leaf.orig
before=$(file_size mid.vhd)
run "$VHD_UTIL" coalesce -n leaf.vhd -s
view mid.vhd >mid.after
cmp_files leaf.view mid.after
sparse_size=$(file_size mid.vhd)
cp mid.orig mid.vhd
cp leaf.orig leaf.vhd
run "$VHD_UTIL" coalesce -n leaf.vhd
full_size=$(file_size mid.vhd)
echo "mid: $before bytes before, $sparse_size with -s, $full_size without"
# leaf's zeros at 16000 (block 7) fall on nothing: not written with -s
[ "$sparse_size" -lt "$full_size" ] || die "-s wrote a block of zeros over nothing"
# ... while the zeros at 21000 hide base's data and must be in mid
make_chain
run "$VHD_UTIL" coalesce -n leaf.vhd -s -a base.vhd
view mid.vhd >mid.after
cmp_files leaf.view mid.after

log "-p: progress ends at 100.00%"
make_chain
"$VHD_UTIL" coalesce -n leaf.vhd -p 2>progress.err
tr '\r' '\n' <progress.err | grep -qx '100.00%' || die "no 100.00% in progress"
[ "$(tail -c 1 progress.err | od -An -c | tr -d ' ')" = '\n' ] ||
	die "progress does not end with a newline"
make_chain
"$VHD_UTIL" coalesce -n leaf.vhd -o flat2.vhd -p 2>progress.err
tr '\r' '\n' <progress.err | grep -qx '100.00%' || die "no 100.00% in -o progress"

log "errors"
expect_fail "$VHD_UTIL" coalesce
assert_match 'missing -n' "$FAIL_MSG" "names the missing option"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -o flat.vhd
assert_match 'exists' "$FAIL_MSG"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -o new.vhd -a base.vhd
[ ! -e new.vhd ] || die "new.vhd was created"
expect_fail "$VHD_UTIL" coalesce -n base.vhd
assert_match 'parent' "$FAIL_MSG"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -a flat.vhd
assert_match 'not an ancestor' "$FAIL_MSG"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -a leaf.vhd
expect_fail "$VHD_UTIL" coalesce -n nosuch.vhd
assert_match 'nosuch.vhd' "$FAIL_MSG"
expect_fail "$VHD_UTIL" coalesce -n nosuch.vhd -o new.vhd
[ ! -e new.vhd ] || die "new.vhd left behind after a failure"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -x
expect_fail "$VHD_UTIL" coalesce -n
# a missing parent: -o fails and removes its output
mv mid.vhd mid.away
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd -o new.vhd
[ ! -e new.vhd ] || die "new.vhd left behind after a failure"
expect_fail "$VHD_UTIL" coalesce -n leaf.vhd
mv mid.away mid.vhd

echo ok
