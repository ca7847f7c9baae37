#!/usr/bin/env bash
# fill: every block becomes allocated in the leaf, the disk reads the same,
# and the leaf no longer needs its parent.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

mkrandom data.raw $((7 * 1048576)) fill
run "$VHD_UTIL" snapshot -n base.vhd -p data.raw -m
assert_eq 0 "$("$VHD_UTIL" query -n base.vhd -a)"
run "$VHD_UTIL" snapshot -n leaf.vhd -p base.vhd -e
"$VHD_UTIL" read -n leaf.vhd -r 0 -c $((7 * 2048)) >before
cmp_files before data.raw

log "fill the leaf (7 MiB: 4 blocks, the last one partial)"
run "$VHD_UTIL" fill -n leaf.vhd
assert_eq 4 "$("$VHD_UTIL" query -n leaf.vhd -a)" "all blocks allocated"
assert_eq " f0" "$("$VHD_UTIL" read -n leaf.vhd -B | od -An -tx1)" "BAT bitmap"
"$VHD_UTIL" read -n leaf.vhd -r 0 -c $((7 * 2048)) >after
cmp_files before after
assert_eq "0 14336" "$("$VHD_UTIL" read -n leaf.vhd -e 0)" "every sector present in the leaf"
"$VHD_UTIL" read -n leaf.vhd -d 2 | cmp - <(head -c $((6 * 1048576)) data.raw | tail -c $((2 * 1048576))) ||
	die "block 2 data differs"

log "filling again changes nothing"
size=$(file_size leaf.vhd)
run "$VHD_UTIL" fill -n leaf.vhd
assert_eq "$size" "$(file_size leaf.vhd)"

log "the parent is no longer needed for data"
mv data.raw data.moved
run "$VHD_UTIL" modify -n base.vhd -z
head -c $((7 * 1048576)) /dev/zero >zeros.raw
mv zeros.raw data.raw
"$VHD_UTIL" read -n leaf.vhd -r 0 -c $((7 * 2048)) >after
cmp_files before after

log "a partly written leaf keeps its own sectors"
run "$VHD_UTIL" snapshot -n top.vhd -p leaf.vhd
run "$VHD_UTIL" fill -n top.vhd
"$VHD_UTIL" read -n top.vhd -r 0 -c $((7 * 2048)) >top
cmp_files before top

log "fixed image: nothing to do; errors"
run "$VHD_UTIL" create -n fixed.vhd -s 2 -r
run "$VHD_UTIL" fill -n fixed.vhd
expect_fail "$VHD_UTIL" fill
expect_fail "$VHD_UTIL" fill -n nosuch.vhd
expect_fail "$VHD_UTIL" fill -n leaf.vhd -x
echo ok
