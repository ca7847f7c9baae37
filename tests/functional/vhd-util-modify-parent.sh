#!/usr/bin/env bash
# modify: -p repoints a child at another (identical) parent, -m a raw one;
# -z drops every block; -s moves the footer (physical size).
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

mkrandom data.raw $((4 * 1048576)) modify
run "$VHD_UTIL" snapshot -n base.vhd -p data.raw -m
run "$VHD_UTIL" fill -n base.vhd
run "$VHD_UTIL" snapshot -n child.vhd -p base.vhd
"$VHD_UTIL" read -n child.vhd -r 0 -c 8192 >before
cmp_files before data.raw

log "-p: a parent under another name (a copy keeps the uuid)"
mkdir other
cp base.vhd other/copy.vhd
run "$VHD_UTIL" modify -n child.vhd -p other/copy.vhd
assert_eq "$TMPDIR/other/copy.vhd" "$("$VHD_UTIL" query -n child.vhd -p)"
assert_eq "./other/copy.vhd" "$("$VHD_UTIL" query -n child.vhd -p -u)"
rm base.vhd
"$VHD_UTIL" read -n child.vhd -r 0 -c 8192 >after
cmp_files before after
"$VHD_UTIL" read -n child.vhd -p | grep -q '^Parent name         : copy.vhd$' ||
	die "header parent name not updated"

log "-p -m: straight to the raw file"
run "$VHD_UTIL" modify -n child.vhd -p data.raw -m
assert_eq "$TMPDIR/data.raw" "$("$VHD_UTIL" query -n child.vhd -p)"
assert_eq "chain depth: 2" "$("$VHD_UTIL" query -n child.vhd -d)"
"$VHD_UTIL" read -n child.vhd -r 0 -c 8192 >after
cmp_files before after

log "-p on a non-differencing image, -m alone, nothing to do"
run "$VHD_UTIL" create -n dyn.vhd -s 4
expect_fail "$VHD_UTIL" modify -n dyn.vhd -p data.raw -m
assert_match "differencing" "$FAIL_MSG"
expect_fail "$VHD_UTIL" modify -n child.vhd -m
expect_fail "$VHD_UTIL" modify -n child.vhd
expect_fail "$VHD_UTIL" modify -n child.vhd -p nosuch.vhd
assert_eq "$TMPDIR/data.raw" "$("$VHD_UTIL" query -n child.vhd -p)" "unchanged"

log "-z: every block dropped, the file truncated"
cp other/copy.vhd z.vhd
assert_eq 2 "$("$VHD_UTIL" query -n z.vhd -a)"
empty=$(file_size child.vhd)
run "$VHD_UTIL" modify -n z.vhd -z
assert_eq 0 "$("$VHD_UTIL" query -n z.vhd -a)"
assert_eq "$empty" "$(file_size z.vhd)" "as small as a fresh snapshot"
assert_eq "$empty" "$("$VHD_UTIL" query -n z.vhd -s)"
"$VHD_UTIL" read -n z.vhd -r 0 -c 8192 >zread
cmp_files zread data.raw
assert_eq "" "$("$VHD_UTIL" read -n z.vhd -a | tr -d '\0')" "batmap cleared"
log "a zeroed image takes new data"
run "$VHD_UTIL" fill -n z.vhd
assert_eq 2 "$("$VHD_UTIL" query -n z.vhd -a)"
"$VHD_UTIL" read -n z.vhd -r 0 -c 8192 >zread
cmp_files zread data.raw
run "$VHD_UTIL" create -n fixed.vhd -s 2 -r
expect_fail "$VHD_UTIL" modify -n fixed.vhd -z

log "-s: grow and shrink the file, never below the data"
phys=$("$VHD_UTIL" query -n z.vhd -s)
run "$VHD_UTIL" modify -n z.vhd -s $((phys + 1048576))
assert_eq $((phys + 1048576)) "$(file_size z.vhd)"
assert_eq "$phys" "$("$VHD_UTIL" query -n z.vhd -s)" "physical size counts data, not padding"
"$VHD_UTIL" read -n z.vhd -r 0 -c 8192 >zread
cmp_files zread data.raw
run "$VHD_UTIL" modify -n z.vhd -s "$phys"
assert_eq "$phys" "$(file_size z.vhd)"
expect_fail "$VHD_UTIL" modify -n z.vhd -s $((phys - 512))
expect_fail "$VHD_UTIL" modify -n z.vhd -s $((phys + 100))
expect_fail "$VHD_UTIL" modify -n z.vhd -s lots
assert_eq "$phys" "$(file_size z.vhd)" "unchanged by failures"
"$VHD_UTIL" read -n z.vhd -r 0 -c 8192 >zread
cmp_files zread data.raw
echo ok
