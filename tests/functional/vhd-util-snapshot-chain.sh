#!/usr/bin/env bash
# snapshot: chain depth, skipping of empty parents (unless -e), the -l depth
# limit (ENOSPC, one line), and -S not being taken as a limit.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

mkrandom data.raw $((6 * 1048576))
run "$VHD_UTIL" create -n base.vhd -s 6
depth() { "$VHD_UTIL" query -n "$1" -d; }

log "-e keeps empty parents in the chain"
run "$VHD_UTIL" snapshot -n s1.vhd -p base.vhd
run "$VHD_UTIL" snapshot -n s2.vhd -p s1.vhd -e
run "$VHD_UTIL" snapshot -n s3.vhd -p s2.vhd -e
assert_eq "chain depth: 2" "$(depth s1.vhd)"
assert_eq "chain depth: 3" "$(depth s2.vhd)"
assert_eq "chain depth: 4" "$(depth s3.vhd)"
assert_eq "$TMPDIR/s2.vhd" "$("$VHD_UTIL" query -n s3.vhd -p)"

log "without -e, empty differencing parents are skipped"
run "$VHD_UTIL" snapshot -n skip.vhd -p s3.vhd
assert_eq "$TMPDIR/base.vhd" "$("$VHD_UTIL" query -n skip.vhd -p)" \
	"linked to the first image with data"
assert_eq "chain depth: 2" "$(depth skip.vhd)"
assert_eq 6 "$("$VHD_UTIL" query -n skip.vhd -v)"

log "a parent with data is not skipped"
run "$VHD_UTIL" snapshot -n r1.vhd -p data.raw -m
run "$VHD_UTIL" fill -n r1.vhd
run "$VHD_UTIL" snapshot -n r2.vhd -p r1.vhd
assert_eq "$TMPDIR/r1.vhd" "$("$VHD_UTIL" query -n r2.vhd -p)"
log "an empty child of a raw file leads to the raw file"
run "$VHD_UTIL" snapshot -n e1.vhd -p data.raw -m
run "$VHD_UTIL" snapshot -n e2.vhd -p e1.vhd
assert_eq "$TMPDIR/data.raw" "$("$VHD_UTIL" query -n e2.vhd -p)"
"$VHD_UTIL" read -n e2.vhd -r 0 -c 12288 >e2.out
cmp_files data.raw e2.out

log "-l: depth of the backing image + 1 must not exceed the limit"
run "$VHD_UTIL" snapshot -n ok4.vhd -p s3.vhd -e -l 5
assert_eq "chain depth: 5" "$(depth ok4.vhd)"
rc=0
"$VHD_UTIL" snapshot -n no.vhd -p s3.vhd -e -l 4 2>err || rc=$?
assert_eq 28 "$rc" "exit status ENOSPC"
assert_eq 1 "$(wc -l <err)" "one line on stderr"
assert_match 'snapshot depth exceeded: current depth: 4, limit: 4' "$(cat err)"
[ ! -e no.vhd ] || die "refused snapshot was created"
log "-l counts the image actually linked to (empty parents skipped)"
run "$VHD_UTIL" snapshot -n ok2.vhd -p s3.vhd -l 2
assert_eq "chain depth: 2" "$(depth ok2.vhd)"
expect_fail "$VHD_UTIL" snapshot -n no.vhd -p s3.vhd -l 1
expect_fail "$VHD_UTIL" snapshot -n no.vhd -p s3.vhd -l 0
expect_fail "$VHD_UTIL" snapshot -n no.vhd -p s3.vhd -l x

log "-S is metadata preallocation, not a depth limit"
# (blktap's -S fell through into -l: -S 2 on a chain of depth 3 failed.)
run "$VHD_UTIL" create -n small.vhd -s 2
run "$VHD_UTIL" snapshot -n t1.vhd -p small.vhd
run "$VHD_UTIL" snapshot -n t2.vhd -p t1.vhd -e
run "$VHD_UTIL" snapshot -n pre.vhd -p t2.vhd -e -S 2
assert_eq "chain depth: 4" "$(depth pre.vhd)"
run "$VHD_UTIL" snapshot -n pre2.vhd -p s3.vhd -e -S 64
assert_eq 64 "$("$VHD_UTIL" query -n pre2.vhd -S)"
assert_eq 6 "$("$VHD_UTIL" query -n pre2.vhd -v)"
expect_fail "$VHD_UTIL" snapshot -n pre3.vhd -p s3.vhd -e -S 4

log "errors"
expect_fail "$VHD_UTIL" snapshot -n x.vhd
expect_fail "$VHD_UTIL" snapshot -p base.vhd
expect_fail "$VHD_UTIL" snapshot -n x.vhd -p nosuch.vhd
assert_match nosuch.vhd "$FAIL_MSG"
expect_fail "$VHD_UTIL" snapshot -n s1.vhd -p base.vhd
expect_fail "$VHD_UTIL" snapshot -n x.vhd -p base.vhd -k
[ ! -e x.vhd ] || die "x.vhd created"
echo ok
