#!/usr/bin/env bash
# query: exact output of every flag, in the fixed order v s p f m d S a,
# whatever order the flags come in; failures are one line.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

run "$VHD_UTIL" create -n base.vhd -s 20 -S 64
size=$(file_size base.vhd)

log "all flags on a dynamic base image"
want=$(printf '%s\n' 20 "$size" "base.vhd has no parent" "hidden: 0" \
	"marker: 0" "chain depth: 1" 64 0)
got=$("$VHD_UTIL" query -n base.vhd -v -s -p -f -m -d -S -a)
assert_eq "$want" "$got" "query output"
got=$("$VHD_UTIL" query -n base.vhd -a -S -d -m -f -p -s -v)
assert_eq "$want" "$got" "query output with flags reversed"
got=$("$VHD_UTIL" query -n base.vhd -vspfmdSa)
assert_eq "$want" "$got" "query output with bundled flags"

log "a snapshot: parent path, depth"
mkdir sub
run "$VHD_UTIL" snapshot -n sub/child.vhd -p base.vhd
assert_eq "$TMPDIR/base.vhd" "$(cd / && "$VHD_UTIL" query -n "$TMPDIR/sub/child.vhd" -p)" \
	"resolved parent (absolute, real path)"
assert_eq "../base.vhd" "$("$VHD_UTIL" query -n sub/child.vhd -p -u)" \
	"stored (unresolved) locator text: the relative W2ru one"
assert_eq "chain depth: 2" "$("$VHD_UTIL" query -n sub/child.vhd -d)"
assert_eq 20 "$("$VHD_UTIL" query -n sub/child.vhd -v)"
run "$VHD_UTIL" snapshot -n sub/gc.vhd -p sub/child.vhd -e
assert_eq "chain depth: 3" "$("$VHD_UTIL" query -n sub/gc.vhd -d)"

log "a fixed image: no marker (no batmap) - one line, non-zero"
run "$VHD_UTIL" create -n fixed.vhd -s 2 -r
assert_eq "$(printf '2\nfixed.vhd has no parent\nhidden: 0\nchain depth: 1\n0\n1')" \
	"$("$VHD_UTIL" query -n fixed.vhd -v -p -f -d -S -a)"
expect_fail "$VHD_UTIL" query -n fixed.vhd -m
assert_match fixed.vhd "$FAIL_MSG" "the error names the file"
assert_match batmap "$FAIL_MSG"

log "failures"
expect_fail "$VHD_UTIL" query -n missing.vhd -v
assert_match missing.vhd "$FAIL_MSG"
expect_fail "$VHD_UTIL" query -v
expect_fail "$VHD_UTIL" query -n base.vhd -Z
expect_fail "$VHD_UTIL" query -n base.vhd -u
head -c 4096 /dev/zero >zero.vhd
expect_fail "$VHD_UTIL" query -n zero.vhd -v
assert_match zero.vhd "$FAIL_MSG"

log "a missing parent: -p fails with one line, -p -u still works"
mv base.vhd moved.vhd
expect_fail "$VHD_UTIL" query -n sub/child.vhd -p
assert_eq "../base.vhd" "$("$VHD_UTIL" query -n sub/child.vhd -p -u)"
expect_fail "$VHD_UTIL" query -n sub/child.vhd -d

log "-h"
assert_match '^usage: vhd-util query' "$("$VHD_UTIL" query -h)"
echo ok
