#!/usr/bin/env bash
# vhd-util resize and revert: fast resize within the -S reserve, journaled
# resize of dynamic (blocks moved out of the way of the bigger BAT),
# differencing and fixed images, refusals with one-line messages, and the
# result as QEMU sees it.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

CW=$TOOLSDIR/crash-writer
[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
[ -x "$CW" ] || die "crash-writer not built: $CW"

vsize() { "$VHD_UTIL" query -n "$1" -v; }
check() { run "$VHD_UTIL" check -n "$1" >/dev/null; }
verify() { "$CW" verify "$@" >/dev/null || die "data differs: $*"; }

# same_as_qemu IMG MB [info]: qemu's view of the image (size and, unless
# "info", contents) is ours.
same_as_qemu() {
	local img=$1 mb=$2 what=${3:-}
	command -v qemu-img >/dev/null 2>&1 || { log "(no qemu-img)"; return 0; }
	local info
	info=$(qemu-img info -f vpc --output=json "$img")
	assert_match "\"virtual-size\": $((mb << 20))," "$info" "qemu-img virtual size"
	[ "$what" != info ] || return 0
	rm -f q.raw o.raw
	run qemu-img convert -f vpc -O raw "$img" q.raw
	"$VHD_UTIL" read -n "$img" -r 0 -c $((mb << 11)) >o.raw ||
		die "vhd-util read failed"
	cmp_files q.raw o.raw
	rm -f q.raw o.raw
}

log "usage errors"
run "$VHD_UTIL" create -n u.vhd -s 8
expect_fail "$VHD_UTIL" resize -n u.vhd -s 16
assert_match "-j|-f" "$FAIL_MSG"
expect_fail "$VHD_UTIL" resize -n u.vhd -s 16 -f -j u.jnl
expect_fail "$VHD_UTIL" resize -n u.vhd -j u.jnl
expect_fail "$VHD_UTIL" resize -s 16 -f
expect_fail "$VHD_UTIL" resize -n u.vhd -s abc -f
expect_fail "$VHD_UTIL" revert -n u.vhd
expect_fail "$VHD_UTIL" revert -n u.vhd -j no-such.jnl
assert_eq 8 "$(vsize u.vhd)" "size unchanged by failures"

log "fast resize within the -S reserve"
run "$VHD_UTIL" create -n f.vhd -s 100 -S 1000
"$CW" write f.vhd 1 30 >f.log
run "$VHD_UTIL" resize -n f.vhd -s 500 -f
assert_eq 500 "$(vsize f.vhd)"
assert_eq 1000 "$("$VHD_UTIL" query -n f.vhd -S)" "reserve kept"
check f.vhd
verify f.vhd f.log
run "$VHD_UTIL" resize -n f.vhd -s 999 -f	# rounded up to 1000
assert_eq 1000 "$(vsize f.vhd)"
same_as_qemu f.vhd 1000 info
expect_fail "$VHD_UTIL" resize -n f.vhd -s 1002 -f
assert_match "1002|-j" "$FAIL_MSG"
expect_fail "$VHD_UTIL" resize -n f.vhd -s 200 -f
assert_match "shrink" "$FAIL_MSG"
assert_eq 1000 "$(vsize f.vhd)" "size unchanged by refusals"
check f.vhd

log "journaled grow of a dynamic image: the first block must move"
run "$VHD_UTIL" create -n d.vhd -s 256
"$CW" write d.vhd 2 40 >d.log
first_block=$(awk '$1 == "ack" { print int($3 / 4096); exit }' d.log)
before=$("$VHD_UTIL" read -n d.vhd -b "$first_block")
echo "$before"
run "$VHD_UTIL" resize -n d.vhd -s 768 -j d.jnl
[ ! -e d.jnl ] || die "journal left after a successful resize"
after=$("$VHD_UTIL" read -n d.vhd -b "$first_block")
echo "$after"
[ "$before" != "$after" ] || die "block $first_block did not move"
assert_eq 768 "$(vsize d.vhd)"
assert_eq 768 "$("$VHD_UTIL" query -n d.vhd -S)" "BAT grown"
check d.vhd
verify d.vhd d.log
same_as_qemu d.vhd 768
# It stays a normal image: more writes, a further (fast-path) resize.
"$CW" write d.vhd 3 20 >d2.log
check d.vhd
run "$VHD_UTIL" resize -n d.vhd -s 768 -j d.jnl	# same size: nothing
[ ! -e d.jnl ] || die "journal left behind"

log "journaled grow of a differencing image: locators move too"
run "$VHD_UTIL" create -n p.vhd -s 128
"$CW" write p.vhd 4 20 >p.log
run "$VHD_UTIL" snapshot -n c.vhd -p p.vhd
"$CW" write c.vhd 5 20 >c.log
run "$VHD_UTIL" resize -n c.vhd -s 2048 -j c.jnl
[ ! -e c.jnl ] || die "journal left after a successful resize"
assert_eq 2048 "$(vsize c.vhd)"
check c.vhd
run "$VHD_UTIL" check -n c.vhd -p >/dev/null
assert_eq "$(realpath p.vhd)" "$("$VHD_UTIL" query -n c.vhd -p)" "parent found"
verify c.vhd c.log p.log

log "journaled grow within the reserve takes the fast path"
run "$VHD_UTIL" create -n r.vhd -s 64 -S 512
"$CW" write r.vhd 6 10 >r.log
run "$VHD_UTIL" resize -n r.vhd -s 256 -j r.jnl
assert_eq 256 "$(vsize r.vhd)"
assert_eq 512 "$("$VHD_UTIL" query -n r.vhd -S)" "BAT untouched"
check r.vhd
verify r.vhd r.log

log "journaled resize of a fixed image: grow and shrink"
run "$VHD_UTIL" create -n x.vhd -s 64 -r
"$CW" write x.vhd 7 20 >x.log
run "$VHD_UTIL" resize -n x.vhd -s 96 -j x.jnl
[ ! -e x.jnl ] || die "journal left after a successful resize"
assert_eq 96 "$(vsize x.vhd)"
assert_eq $(((96 << 20) + 512)) "$(file_size x.vhd)" "fixed file size"
check x.vhd
verify x.vhd x.log
same_as_qemu x.vhd 96
"$VHD_UTIL" read -n x.vhd -r 0 -c $((80 << 11)) >x80.before
run "$VHD_UTIL" resize -n x.vhd -s 80 -j x.jnl
assert_eq 80 "$(vsize x.vhd)"
assert_eq $(((80 << 20) + 512)) "$(file_size x.vhd)" "fixed file size"
check x.vhd
"$VHD_UTIL" read -n x.vhd -r 0 -c $((80 << 11)) >x80.after
cmp_files x80.before x80.after
expect_fail "$VHD_UTIL" resize -n x.vhd -s 100 -f
assert_match "-j" "$FAIL_MSG"

log "refusals: dynamic shrink, an existing journal"
expect_fail "$VHD_UTIL" resize -n d.vhd -s 512 -j d.jnl
assert_match "shrink" "$FAIL_MSG"
[ ! -e d.jnl ] || die "refused resize left a journal"
echo "something" >d.jnl
expect_fail "$VHD_UTIL" resize -n d.vhd -s 2048 -j d.jnl
assert_match "journal" "$FAIL_MSG"
assert_eq 768 "$(vsize d.vhd)"
expect_fail "$VHD_UTIL" revert -n d.vhd -j d.jnl
assert_match "journal" "$FAIL_MSG"
[ -e d.jnl ] || die "revert removed a file that is not a journal"
rm -f d.jnl

log "revert of a completed journal restores the old image exactly"
run "$VHD_UTIL" create -n j.vhd -s 128
"$CW" write j.vhd 8 20 >j.log
cp j.vhd j.orig
run "$VHD_UTIL" create -n other.vhd -s 128
# Kill it just before the journal is removed: the resize is complete.
last=$("$CW" resize j.vhd j.jnl 4096 | sed -n 's/^steps //p')
cp j.orig j.vhd
rc=0
VHD_CRASH_AT_STEP=$last "$CW" resize j.vhd j.jnl 4096 >/dev/null 2>&1 || rc=$?
assert_eq 137 "$rc" "killed at the last step"
[ -e j.jnl ] || die "no journal after the kill"
assert_eq 4096 "$(vsize j.vhd)" "resize was complete"
expect_fail "$VHD_UTIL" revert -n other.vhd -j j.jnl
assert_match "uuid" "$FAIL_MSG"
run "$VHD_UTIL" revert -n j.vhd -j j.jnl
[ ! -e j.jnl ] || die "revert left the journal"
cmp_files j.orig j.vhd
check j.vhd
verify j.vhd j.log
echo ok
