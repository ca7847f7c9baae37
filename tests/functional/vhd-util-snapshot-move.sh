#!/usr/bin/env bash
# Parent locators are relative: a chain keeps working after its whole
# directory is moved (query -p shows the new place, read -r reads through).
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

mkdir -p old/disks
mkrandom old/disks/data.raw $((5 * 1048576)) move
cd old/disks
run "$VHD_UTIL" snapshot -n base.vhd -p data.raw -m
run "$VHD_UTIL" fill -n base.vhd
mkdir snaps
run "$VHD_UTIL" snapshot -n snaps/leaf.vhd -p base.vhd
cd "$TMPDIR"
"$VHD_UTIL" read -n old/disks/snaps/leaf.vhd -r 0 -c 10240 >before
cmp_files old/disks/data.raw before

log "move the whole tree"
cp old/disks/data.raw copy.raw
mv old new
assert_eq "$TMPDIR/new/disks/base.vhd" "$("$VHD_UTIL" query -n new/disks/snaps/leaf.vhd -p)"
assert_eq "$TMPDIR/new/disks/base.vhd" \
	"$(cd new/disks/snaps && "$VHD_UTIL" query -n leaf.vhd -p)" "from the leaf's dir"
assert_eq "chain depth: 3" "$("$VHD_UTIL" query -n new/disks/snaps/leaf.vhd -d)" "leaf, base, raw"
"$VHD_UTIL" read -n new/disks/snaps/leaf.vhd -r 0 -c 10240 >after
cmp_files before after

log "read -R through the chain: an unaligned byte range"
"$VHD_UTIL" read -n new/disks/snaps/leaf.vhd -R 1000 -c 70000 >range
cmp_files range <(head -c 71000 copy.raw | tail -c 70000)

log "a missing parent fails with one line"
mv new/disks/base.vhd new/base.vhd
expect_fail "$VHD_UTIL" read -n new/disks/snaps/leaf.vhd -r 0 -c 1
assert_match base.vhd "$FAIL_MSG"
echo ok
