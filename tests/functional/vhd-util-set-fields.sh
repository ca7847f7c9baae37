#!/usr/bin/env bash
# set: hidden and marker round trip through query, and survive a reopen by
# another verb; bad fields and values fail with one line.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"

run "$VHD_UTIL" create -n d.vhd -s 4
run "$VHD_UTIL" snapshot -n s.vhd -p d.vhd
run "$VHD_UTIL" create -n f.vhd -s 2 -r

for img in d.vhd s.vhd; do
	for v in 1 0 255 42; do
		run "$VHD_UTIL" set -n $img -f hidden -v $v
		assert_eq "hidden: $v" "$("$VHD_UTIL" query -n $img -f)" "$img hidden"
		run "$VHD_UTIL" set -n $img -f marker -v $((255 - v))
		assert_eq "marker: $((255 - v))" "$("$VHD_UTIL" query -n $img -m)" "$img marker"
		assert_eq "hidden: $v" "$("$VHD_UTIL" query -n $img -f)" "marker left hidden alone"
	done
done
log "hidden is in both footer copies (the end one and the one at 0)"
assert_eq "$(tail -c 512 d.vhd | od -An -tx1)" "$(head -c 512 d.vhd | od -An -tx1)"
assert_eq 42 "$(tail -c 512 d.vhd | od -An -tu1 -j85 -N1 | tr -d ' ')" "byte 85 of the footer"
log "the chain still reads after changing the parent's fields"
"$VHD_UTIL" read -n s.vhd -r 0 -c 8 | cmp - <(head -c 4096 /dev/zero)
assert_eq "hidden: 42" "$("$VHD_UTIL" scan d.vhd | sed 's/.*\(hidden=[0-9]*\).*/\1/;s/=/: /')"

log "fixed image: hidden works, marker does not (no batmap)"
run "$VHD_UTIL" set -n f.vhd -f hidden -v 9
assert_eq "hidden: 9" "$("$VHD_UTIL" query -n f.vhd -f)"
expect_fail "$VHD_UTIL" set -n f.vhd -f marker -v 1

log "bad arguments"
expect_fail "$VHD_UTIL" set -n d.vhd -f hidden -v 256
expect_fail "$VHD_UTIL" set -n d.vhd -f hidden -v -1
expect_fail "$VHD_UTIL" set -n d.vhd -f hidden -v 1x
expect_fail "$VHD_UTIL" set -n d.vhd -f colour -v 1
assert_match colour "$FAIL_MSG"
expect_fail "$VHD_UTIL" set -n d.vhd -f hidden
expect_fail "$VHD_UTIL" set -f hidden -v 1
expect_fail "$VHD_UTIL" set -n nosuch.vhd -f hidden -v 1
assert_eq "hidden: 42" "$("$VHD_UTIL" query -n d.vhd -f)" "unchanged by failures"
echo ok
