#!/usr/bin/env bash
# Each parent locator kind (MacX, W2ku, W2ru) resolves on its own, with its
# data space given in bytes (as blktap and Microsoft write it) or in sectors
# (as the specification says).  Images are edited with python3 to keep one
# locator and the header checksum right.
. "$(dirname "$0")/lib.sh"
need_cmd python3

cd "$TMPDIR"
mkdir d
"$VHD_UTIL" create -n d/base.vhd -s 8
"$VHD_UTIL" snapshot -n d/child.vhd -p d/base.vhd
base_abs=$(cd d && pwd)/base.vhd

# keep_locator FILE CODE UNITS: drop every locator but CODE; UNITS is
# "bytes" or "sectors" for its data space field.
keep_locator() {
	python3 - "$@" <<'PY'
import struct, sys
path, keep, units = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
with open(path, 'r+b') as f:
    f.seek(512)
    h = bytearray(f.read(1024))
    kept = 0
    for i in range(8):
        o = 576 + 24 * i
        code, space, length, res, off = struct.unpack('>4sIIIQ', h[o:o + 24])
        if code != keep:
            h[o:o + 24] = bytes(24)
            continue
        kept += 1
        nbytes = space if space >= 512 else space * 512
        space = nbytes // 512 if units == 'sectors' else nbytes
        h[o:o + 24] = struct.pack('>4sIIIQ', code, space, length, res, off)
    assert kept == 1, kept
    h[36:40] = bytes(4)
    struct.pack_into('>I', h, 36, ~sum(h) & 0xffffffff)
    f.seek(512)
    f.write(h)
PY
}

for code in MacX W2ku W2ru; do
	for units in bytes sectors; do
		log "$code alone, data space in $units"
		cp d/child.vhd d/one.vhd
		keep_locator d/one.vhd "$code" "$units"
		"$VHD_UTIL" check -n d/one.vhd -p >/dev/null ||
			die "check rejects a child with only a $code locator ($units)"
		assert_eq "$base_abs" "$("$VHD_UTIL" query -n d/one.vhd -p)" \
			"$code locator ($units) resolves to the parent"
		assert_eq "chain depth: 2" "$("$VHD_UTIL" query -n d/one.vhd -d)"
		# -u shows the stored text: relative for MacX/W2ru, absolute W2ku.
		stored=$("$VHD_UTIL" query -n d/one.vhd -p -u)
		case $code in
		W2ku) assert_eq "$base_abs" "$stored" ;;
		*) assert_eq "./base.vhd" "$stored" ;;
		esac
	done
done

log "after moving the directory, the relative kinds still resolve, W2ku alone cannot"
for code in MacX W2ru W2ku; do
	cp d/child.vhd d/"$code".vhd
	keep_locator d/"$code".vhd "$code" bytes
done
mv d moved
for code in MacX W2ru; do
	assert_eq "$TMPDIR/moved/base.vhd" \
		"$("$VHD_UTIL" query -n moved/"$code".vhd -p)" "$code after the move"
done
expect_fail "$VHD_UTIL" query -n moved/W2ku.vhd -p
assert_match "parent not found" "$FAIL_MSG"
expect_fail "$VHD_UTIL" check -n moved/W2ku.vhd -p
echo "all locator kinds OK"
