#!/usr/bin/env bash
# read: the -p header dump (layout, checksums Good!/Bad!, a damaged image
# still dumps), BAT and sector lookups (-t -b -i -j -e), raw output (-B -a
# -m -d), -x hex, and range errors.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TMPDIR"
export TZ=UTC

mkrandom data.raw $((4 * 1048576)) dump
run "$VHD_UTIL" snapshot -n filled.vhd -p data.raw -m
run "$VHD_UTIL" fill -n filled.vhd
run "$VHD_UTIL" create -n d.vhd -s 4

log "-p on a dynamic image"
"$VHD_UTIL" read -n d.vhd -p >dump
cat dump
line() { grep -m1 "^$1 *: " dump | sed 's/^[^:]*: //'; }
assert_eq "VHD Footer Summary:" "$(sed -n 1p dump)"
assert_eq "-------------------" "$(sed -n 2p dump)"
assert_eq "Cookie              : conectix" "$(sed -n 3p dump)"
assert_eq "(0x00000002) <RESV>" "$(line Features)"
assert_eq "Major: 1, Minor: 0" "$(line 'File format version')"
assert_eq 512 "$(line 'Data offset')"
assert_eq "'tap'" "$(line 'Creator Application')"
assert_eq "Major: 1, Minor: 3" "$(line 'Creator version')"
assert_eq "4 MB (4194304 Bytes)" "$(line 'Current disk size')"
assert_eq "Dynamic hard disk" "$(line 'Disk type')"
assert_match '^0x[0-9a-f]+\|0x[0-9a-f]+ \(Good!\)$' "$(line Checksum)"
assert_eq "No" "$(line 'Saved state')"
assert_eq 0 "$(line Hidden)"
assert_eq 1 "$(grep -c '^VHD Header Summary:$' dump)"
assert_eq "2097152 (2 MB)" "$(line 'Block size')"
assert_eq 2 "$(line 'Max BAT size')"
assert_eq 1536 "$(line 'Table offset')"
assert_eq 3 "$(grep -c '(Good!)$' dump)" "footer, header and batmap checksums"
assert_eq 0 "$(grep -c 'VHD Parent Locators' dump)" "no locators on a dynamic image"
ts=$(line Timestamp)
assert_match '^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} 20[0-9]{2}$' "$ts"

log "-p on a differencing image lists the locators"
"$VHD_UTIL" read -n filled.vhd -p >dump
assert_eq "Differencing hard disk" "$(line 'Disk type')"
assert_eq data.raw "$(line 'Parent name')"
assert_eq 1 "$(grep -c '^VHD Parent Locators:$' dump)"
assert_eq 3 "$(grep -c '^locator:            : ' dump)"
grep -q '^       code         : PLAT_CODE_MACX$' dump || die "no MacX locator"
grep -q '^       decoded name : ./data.raw$' dump || die "no decoded relative name"
assert_eq "00000000-0000-0000-0000-000000000000" "$(line 'Parent UUID')" "raw parent"

log "-x prints numbers in hex"
"$VHD_UTIL" read -n d.vhd -p -x >dump
assert_eq 0x200 "$(line 'Data offset')"
assert_eq "0x200000 (0x2 MB)" "$(line 'Block size')"

log "-p on a damaged footer still dumps, with Bad!"
cp d.vhd bad.vhd
sz=$(file_size bad.vhd)
printf '\x55' | dd of=bad.vhd bs=1 seek=$((sz - 512 + 48 + 7)) conv=notrunc 2>/dev/null
printf '\x55' | dd of=bad.vhd bs=1 seek=$((48 + 7)) conv=notrunc 2>/dev/null
rc=0
"$VHD_UTIL" read -n bad.vhd -p >dump 2>err || rc=$?
if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then die "status $rc for a bad image"; fi
assert_eq 1 "$(wc -l <err)" "one line on stderr"
assert_match '\(Bad!\)$' "$(line Checksum)"
assert_eq "VHD Footer Summary:" "$(sed -n 1p dump)"

log "only the end footer damaged: lenient open, the dump shows it"
cp d.vhd bad2.vhd
printf '\x55' | dd of=bad2.vhd bs=1 seek=$((sz - 512 + 48 + 7)) conv=notrunc 2>/dev/null
"$VHD_UTIL" read -n bad2.vhd -p >dump
assert_match '\(Bad!\)$' "$(line Checksum)"
grep -q '^VHD Header Summary:$' dump || die "no header summary"

log "-t and -b"
bat0=$("$VHD_UTIL" read -n filled.vhd -b 0 | sed 's/.*offset: //')
assert_match '^[0-9]+$' "$bat0"
assert_eq $(( (bat0 / 512 + 1 + 5) * 512 )) \
	"$("$VHD_UTIL" read -n filled.vhd -t 5 | sed 's/.*file offset: //')" "file offset of sector 5"
assert_eq "logical sector 4097: block number: 1, sector offset: 1, file offset: not allocated" \
	"$("$VHD_UTIL" read -n d.vhd -t 4097)"
assert_eq "$(printf 'block: 0: not allocated\nblock: 1: not allocated')" \
	"$("$VHD_UTIL" read -n d.vhd -b 0 -c 2)"
assert_eq "logical sector 0x5: file offset: 0xa00" \
	"$("$VHD_UTIL" create -n fx.vhd -s 2 -r && "$VHD_UTIL" read -n fx.vhd -t 5 -x)"

log "-i -j -e"
assert_eq "block 1: sec: 4096: 1" "$("$VHD_UTIL" read -n filled.vhd -i 4096)"
assert_eq "block 0: sec: 7: 0" "$("$VHD_UTIL" read -n d.vhd -i 7)"
assert_eq "batmap for block 1: 1" "$("$VHD_UTIL" read -n filled.vhd -j 1)"
assert_eq "batmap for block 0: 0" "$("$VHD_UTIL" read -n d.vhd -j 0)"
assert_eq "0 8192" "$("$VHD_UTIL" read -n filled.vhd -e 0)"
assert_eq "100 10" "$("$VHD_UTIL" read -n filled.vhd -e 100 -c 10)"
assert_eq "" "$("$VHD_UTIL" read -n d.vhd -e 0)"

log "raw outputs"
assert_eq " c0" "$("$VHD_UTIL" read -n filled.vhd -B | od -An -tx1)" "BAT bitmap"
assert_eq 512 "$("$VHD_UTIL" read -n filled.vhd -a | wc -c)" "batmap bytes"
assert_eq " c0" "$("$VHD_UTIL" read -n filled.vhd -a | head -c 1 | od -An -tx1)"
assert_eq 512 "$("$VHD_UTIL" read -n filled.vhd -m 0 | wc -c)" "bitmap bytes"
assert_eq "$(head -c 512 /dev/zero | tr '\0' '\377' | od -An -tx1)" \
	"$("$VHD_UTIL" read -n filled.vhd -m 0 | od -An -tx1)" "a full bitmap"
"$VHD_UTIL" read -n filled.vhd -d 1 >blk1
cmp_files blk1 <(tail -c $((2 * 1048576)) data.raw)
assert_eq "block 0 not allocated" "$("$VHD_UTIL" read -n d.vhd -d 0)"
"$VHD_UTIL" read -n filled.vhd -r 8190 -c 2 >tail2
cmp_files tail2 <(tail -c 1024 data.raw)

log "range errors"
expect_fail "$VHD_UTIL" read -n d.vhd -t 8192
expect_fail "$VHD_UTIL" read -n d.vhd -b 2
expect_fail "$VHD_UTIL" read -n d.vhd -r 8191 -c 2
expect_fail "$VHD_UTIL" read -n d.vhd -R 4194300 -c 5
expect_fail "$VHD_UTIL" read -n fx.vhd -b 0
expect_fail "$VHD_UTIL" read -n fx.vhd -a
expect_fail "$VHD_UTIL" read -n d.vhd
expect_fail "$VHD_UTIL" read -n d.vhd -t abc
expect_fail "$VHD_UTIL" read -n d.vhd -c 0 -r 0
expect_fail "$VHD_UTIL" read -p
expect_fail "$VHD_UTIL" read -n d.vhd -p -W
expect_fail "$VHD_UTIL" read -n nosuch.vhd -p
echo ok
