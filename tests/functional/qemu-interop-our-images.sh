#!/usr/bin/env bash
# Images made and written by our tools, read by QEMU: a fixed image, a
# dynamic one and a three-deep differencing chain.  QEMU reads one image
# alone (it ignores parents and bitmaps), which must equal our reading of
# that image's own blocks; the chain flattened by 'coalesce -o' must equal
# our reading through the chain, for us and for QEMU.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd qemu-img
[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
WRITE=$TOOLSDIR/vhd-write
CAT=$TOOLSDIR/vhd-cat
{ [ -x "$WRITE" ] && [ -x "$CAT" ]; } || die "test tools not built in $TOOLSDIR"
cd "$TMPDIR"

MiB=1048576
mkrandom r3m $((3 * MiB)) r3m
mkrandom r1m $MiB r1m
mkrandom r4k 4096 r4k
mkrandom r2m $((2 * MiB)) r2m

# qemu_reads IMAGE: QEMU's reading of IMAGE alone equals our leaf-only one.
qemu_reads() {
	qemu-img convert -f vpc -O raw "$1" qemu.raw
	"$CAT" --leaf-only "$1" >ours.raw
	cmp_files ours.raw qemu.raw
}

log "fixed"
run "$VHD_UTIL" create -n fixed.vhd -s 12 -r
run "$WRITE" fixed.vhd 0 r3m
run "$WRITE" fixed.vhd 8190 r4k
run "$WRITE" fixed.vhd $((12 * 2048 - 8)) r4k
qemu_reads fixed.vhd
assert_eq $((12 * MiB)) "$(file_size qemu.raw)" "fixed size seen by QEMU"

log "dynamic"
run "$VHD_UTIL" create -n dyn.vhd -s 20
qemu_reads dyn.vhd                     # empty
run "$WRITE" dyn.vhd 0 r3m
run "$WRITE" dyn.vhd 4090 r4k          # across a block boundary
run "$WRITE" dyn.vhd 20000 r1m
run "$WRITE" dyn.vhd $((20 * 2048 - 8)) r4k  # the last sectors
qemu_reads dyn.vhd
assert_eq $((20 * MiB)) "$(file_size qemu.raw)" "dynamic size seen by QEMU"
run "$VHD_UTIL" coalesce -n dyn.vhd -o dynflat.vhd
"$CAT" dyn.vhd >dyn.view
"$CAT" dynflat.vhd >dynflat.view
cmp_files dyn.view dynflat.view
qemu-img convert -f vpc -O raw dynflat.vhd qemu.raw
cmp_files dyn.view qemu.raw

log "three-deep differencing chain"
run "$VHD_UTIL" create -n base.vhd -s 20
run "$WRITE" base.vhd 0 r3m
run "$WRITE" base.vhd 30000 r1m
run "$VHD_UTIL" snapshot -e -n mid.vhd -p base.vhd
run "$WRITE" mid.vhd 2048 r1m
run "$WRITE" mid.vhd 8192 r2m
run "$VHD_UTIL" snapshot -e -n leaf.vhd -p mid.vhd
run "$WRITE" leaf.vhd 4090 r4k
run "$WRITE" leaf.vhd 9000 r4k
run "$WRITE" leaf.vhd 39000 r4k
for img in base.vhd mid.vhd leaf.vhd; do
	qemu_reads "$img"
done
"$CAT" leaf.vhd >chain.view
run "$VHD_UTIL" coalesce -n leaf.vhd -o flat.vhd
"$CAT" flat.vhd >flat.view
cmp_files chain.view flat.view
qemu-img convert -f vpc -O raw flat.vhd qemu.raw
cmp_files chain.view qemu.raw
# The chain view really is layered: it differs from every single image.
for img in base.vhd mid.vhd leaf.vhd; do
	"$CAT" --leaf-only "$img" | cmp -s - chain.view &&
		die "$img alone reads like the whole chain"
done
# QEMU agrees on what a standalone image is.
out=$(qemu-img info flat.vhd)
assert_match 'virtual size: 20 MiB' "$out" "flat.vhd size in qemu-img info"

echo ok
