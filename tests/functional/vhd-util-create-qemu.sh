#!/usr/bin/env bash
# QEMU's vpc driver accepts what create and snapshot produce, with the
# exact virtual size (blktap's creator "tap" makes QEMU use current_size).
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img
cd "$TMPDIR"

qsize() {
	qemu-img info -f vpc --output=json "$1" |
		sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p'
}

for mb in 1 5 100 1000; do
	run "$VHD_UTIL" create -n d$mb.vhd -s $mb
	want=$(( (mb + 1) / 2 * 2 * 1048576 ))
	assert_eq "$want" "$(qsize d$mb.vhd)" "qemu virtual size of d$mb.vhd"
	run qemu-img check -f vpc d$mb.vhd >/dev/null || true
done

run "$VHD_UTIL" create -n fixed.vhd -s 6 -r
assert_eq $((6 * 1048576)) "$(qsize fixed.vhd)" "qemu size of fixed image"

run "$VHD_UTIL" create -n pre.vhd -s 10 -S 200
assert_eq $((10 * 1048576)) "$(qsize pre.vhd)" "qemu size with -S"

run "$VHD_UTIL" snapshot -n snap.vhd -p d100.vhd
assert_eq $((100 * 1048576)) "$(qsize snap.vhd)" "qemu size of a snapshot"

# QEMU reads an empty dynamic image as zeros.
qemu-img convert -f vpc -O raw d5.vhd d5.raw
cmp d5.raw <(head -c $((6 * 1048576)) /dev/zero) || die "qemu reads non-zero data"

echo ok
