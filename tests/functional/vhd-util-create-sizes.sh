#!/usr/bin/env bash
# create: sizes round up to 2 MiB blocks, the 2040 GiB limit, fixed images,
# -S preallocation, and one-line errors for bad arguments.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

log "-s 1 rounds up to one 2 MiB block"
run "$VHD_UTIL" create -n one.vhd -s 1
assert_eq 2 "$("$VHD_UTIL" query -n one.vhd -v)" "virtual size (MiB)"
assert_eq "$(file_size one.vhd)" "$("$VHD_UTIL" query -n one.vhd -s)" \
	"physical size of an empty image is its file size"
assert_eq 0 "$("$VHD_UTIL" query -n one.vhd -a)" "allocated blocks"
assert_eq 2 "$("$VHD_UTIL" query -n one.vhd -S)" "max size without -S"

log "-s 3 rounds to 4 MiB, -s 4 stays"
run "$VHD_UTIL" create -n three.vhd -s 3
assert_eq 4 "$("$VHD_UTIL" query -n three.vhd -v)"
run "$VHD_UTIL" create -n four.vhd -s 4
assert_eq 4 "$("$VHD_UTIL" query -n four.vhd -v)"

log "the largest size, 2040 GiB, is accepted"
run "$VHD_UTIL" create -n max.vhd -s 2088960
assert_eq 2088960 "$("$VHD_UTIL" query -n max.vhd -v)"
assert_eq 2088960 "$("$VHD_UTIL" query -n max.vhd -S)"

log "one MiB more is refused, with one line"
expect_fail "$VHD_UTIL" create -n big.vhd -s 2088961
assert_match 2040 "$FAIL_MSG" "the error names the limit"
[ ! -e big.vhd ] || die "a refused image was left behind"
expect_fail "$VHD_UTIL" create -n huge.vhd -s 18446744073709551615
[ ! -e huge.vhd ] || die "a refused image was left behind"

log "fixed image (-r)"
run "$VHD_UTIL" create -n fixed.vhd -s 4 -r
assert_eq $((4 * 1048576 + 512)) "$(file_size fixed.vhd)" "fixed file size"
assert_eq 4 "$("$VHD_UTIL" query -n fixed.vhd -v)"
assert_eq $((4 * 1048576 + 512)) "$("$VHD_UTIL" query -n fixed.vhd -s)"
assert_eq "fixed.vhd has no parent" "$("$VHD_UTIL" query -n fixed.vhd -p)"

log "-S preallocates the BAT for a later fast resize"
run "$VHD_UTIL" create -n pre.vhd -s 10 -S 100
assert_eq 10 "$("$VHD_UTIL" query -n pre.vhd -v)"
assert_eq 100 "$("$VHD_UTIL" query -n pre.vhd -S)"
expect_fail "$VHD_UTIL" create -n small.vhd -s 10 -S 4
[ ! -e small.vhd ] || die "a refused image was left behind"

log "bad arguments: one line each, nothing created"
expect_fail "$VHD_UTIL" create -n junk.vhd -s 12abc
assert_match 12abc "$FAIL_MSG"
expect_fail "$VHD_UTIL" create -n junk.vhd -s -5
expect_fail "$VHD_UTIL" create -n junk.vhd -s ""
expect_fail "$VHD_UTIL" create -n junk.vhd -s 0
expect_fail "$VHD_UTIL" create -n junk.vhd -s 4 -S xyz
expect_fail "$VHD_UTIL" create -n junk.vhd -s 4 -Q
assert_match "-Q" "$FAIL_MSG" "the error names the option"
expect_fail "$VHD_UTIL" create -n junk.vhd
assert_match "-s" "$FAIL_MSG"
expect_fail "$VHD_UTIL" create -s 4
assert_match "-n" "$FAIL_MSG"
expect_fail "$VHD_UTIL" create -n junk.vhd -s
expect_fail "$VHD_UTIL" create -n junk.vhd -s 4 extra
[ ! -e junk.vhd ] || die "a refused image was left behind"

log "an existing file is not overwritten"
expect_fail "$VHD_UTIL" create -n one.vhd -s 8
assert_eq 2 "$("$VHD_UTIL" query -n one.vhd -v)"

log "-h: usage on stdout, status 0"
out=$("$VHD_UTIL" create -h)
assert_match '^usage: vhd-util create' "$out"

echo ok
