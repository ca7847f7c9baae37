#!/usr/bin/env bash
# vhd-util check on damaged images: each defect is named in exactly one
# line on stderr and the exit status is non-zero; query and read, which
# open the image normally, fail with one line too.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd python3

cd "$TMPDIR"

# patch.py OP FILE [ARGS]: surgery on an image, big-endian fields.
cat >patch.py <<'PY'
import os, struct, sys

op, path = sys.argv[1], sys.argv[2]
args = [int(a, 0) for a in sys.argv[3:]]

def csum(buf, off):
    b = bytearray(buf)
    b[off:off + 4] = b'\0\0\0\0'
    return (~sum(b)) & 0xffffffff

with open(path, 'r+b') as f:
    size = os.path.getsize(path)
    poff = (size - 512) & ~511
    f.seek(0)
    copy = bytearray(f.read(512))
    hoff = struct.unpack('>Q', copy[16:24])[0]
    f.seek(hoff)
    hdr = bytearray(f.read(1024))
    table = struct.unpack('>Q', hdr[16:24])[0]
    if op == 'footer-cookie':           # the primary footer's cookie
        f.seek(poff)
        f.write(b'garbage!')
    elif op == 'footer-csum':           # a byte of the primary footer
        f.seek(poff)
        foot = bytearray(f.read(512))
        foot[64] ^= 0x5a
        f.seek(poff)
        f.write(foot)
    elif op == 'header-csum':           # a reserved header byte
        hdr[1000] ^= 0x01
        f.seek(hoff)
        f.write(hdr)
    elif op == 'bat-set':               # BAT[i] = sector
        f.seek(table + 4 * args[0])
        f.write(struct.pack('>I', args[1]))
    elif op == 'bat-get':
        f.seek(table + 4 * args[0])
        print(struct.unpack('>I', f.read(4))[0])
    elif op == 'size':                  # curr_size in both footers
        for off in (0, poff):
            f.seek(off)
            foot = bytearray(f.read(512))
            foot[48:56] = struct.pack('>Q', args[0])
            foot[64:68] = struct.pack('>I', csum(foot, 64))
            f.seek(off)
            f.write(foot)
    else:
        sys.exit('unknown op ' + op)
PY
patch() { python3 patch.py "$@"; }

# fresh NAME: a 20 MiB dynamic image with data in blocks 0, 1 and 3.
fresh() {
	rm -f "$1"
	"$VHD_UTIL" create -n "$1" -s 20
	"$TOOLSDIR/vhd-write" "$1" 0 data
	"$TOOLSDIR/vhd-write" "$1" 12288 data	# block 3
}
mkrandom data $((3 << 20))

# bad_check WHAT REGEX [CHECK-OPTIONS...]: check fails naming REGEX.
bad_check() {
	local img=$1 re=$2
	shift 2
	expect_fail "$VHD_UTIL" check -n "$img" "$@"
	assert_match "$re" "$FAIL_MSG" "check names the problem"
	assert_match "^vhd-util check: $img: " "$FAIL_MSG" "message format"
}

log "the starting point is valid"
fresh good.vhd
run "$VHD_UTIL" check -n good.vhd -b

log "truncated file"
fresh trunc.vhd
truncate -s -1M trunc.vhd
bad_check trunc.vhd 'truncated'
expect_fail "$VHD_UTIL" query -n trunc.vhd -v
expect_fail "$VHD_UTIL" read -n trunc.vhd -r 0 -c 1

log "file shorter than a footer"
head -c 300 /dev/zero >tiny.vhd
bad_check tiny.vhd 'too small'

log "bad footer cookie (the copy at offset 0 survives)"
fresh cookie.vhd
patch footer-cookie cookie.vhd
bad_check cookie.vhd 'footer.*cookie.*repair'
expect_fail "$VHD_UTIL" query -n cookie.vhd -v
expect_fail "$VHD_UTIL" read -n cookie.vhd -r 0 -c 1
log "check -i accepts the copy at offset 0"
run "$VHD_UTIL" check -i -n cookie.vhd

log "bad footer checksum"
fresh fcsum.vhd
patch footer-csum fcsum.vhd
bad_check fcsum.vhd 'footer.*checksum'
expect_fail "$VHD_UTIL" query -n fcsum.vhd -v

log "bad footer checksum on a fixed image (no copy)"
rm -f fixed.vhd
"$VHD_UTIL" create -n fixed.vhd -s 4 -r
patch footer-csum fixed.vhd
bad_check fixed.vhd 'footer invalid.*checksum'

log "bad header checksum"
fresh hcsum.vhd
patch header-csum hcsum.vhd
bad_check hcsum.vhd 'header checksum'
expect_fail "$VHD_UTIL" query -n hcsum.vhd -v
expect_fail "$VHD_UTIL" read -n hcsum.vhd -r 0 -c 1

log "BAT entry past the end of the file"
fresh pasteof.vhd
patch bat-set pasteof.vhd 1 $((1 << 24))
bad_check pasteof.vhd 'block 1 .*past the end'
expect_fail "$VHD_UTIL" query -n pasteof.vhd -v
expect_fail "$VHD_UTIL" read -n pasteof.vhd -r 0 -c 1

log "two BAT entries overlapping"
fresh overlap.vhd
patch bat-set overlap.vhd 3 "$(patch bat-get overlap.vhd 1)"
bad_check overlap.vhd 'blocks 1 and 3 overlap'
expect_fail "$VHD_UTIL" query -n overlap.vhd -v

log "BAT entry on the header"
fresh onhdr.vhd
patch bat-set onhdr.vhd 0 1
bad_check onhdr.vhd 'block 0 .*overlaps the (footer copy|header)'

log "size over the 2040 GiB limit"
fresh huge.vhd
patch size huge.vhd $(((2040 << 30) + (2 << 20)))
bad_check huge.vhd '2040 GiB'
expect_fail "$VHD_UTIL" query -n huge.vhd -v
expect_fail "$VHD_UTIL" read -n huge.vhd -r 0 -c 1

log "parent loop"
rm -f base.vhd a.vhd b.vhd
"$VHD_UTIL" create -n base.vhd -s 20
"$VHD_UTIL" snapshot -n a.vhd -p base.vhd
"$VHD_UTIL" snapshot -e -n b.vhd -p a.vhd
run "$VHD_UTIL" modify -n a.vhd -p b.vhd
bad_check a.vhd 'parent loop' -p
bad_check b.vhd 'parent loop' -p
expect_fail "$VHD_UTIL" read -n a.vhd -r 0 -c 1
assert_match 'loop' "$FAIL_MSG" "read names the loop"
expect_fail "$VHD_UTIL" query -n a.vhd -d
assert_match 'loop' "$FAIL_MSG" "query -d names the loop"

log "missing parent"
rm -f p.vhd c.vhd
"$VHD_UTIL" create -n p.vhd -s 20
"$VHD_UTIL" snapshot -n c.vhd -p p.vhd
rm p.vhd
bad_check c.vhd 'parent not found: .*p\.vhd'
bad_check c.vhd 'parent not found: .*p\.vhd' -p
expect_fail "$VHD_UTIL" read -n c.vhd -r 0 -c 1
assert_match 'parent not found' "$FAIL_MSG" "read names the missing parent"

log "unknown flags"
expect_fail "$VHD_UTIL" check -n good.vhd -Z
expect_fail "$VHD_UTIL" check -Z
expect_fail "$VHD_UTIL" check -n
expect_fail "$VHD_UTIL" check
expect_fail "$VHD_UTIL" repair -n good.vhd -Z
expect_fail "$VHD_UTIL" repair
log "check of a missing file"
expect_fail "$VHD_UTIL" check -n nosuch.vhd
assert_match 'nosuch.vhd' "$FAIL_MSG"

log "damage is all reported, one line each"
fresh two.vhd
patch header-csum two.vhd
patch bat-set two.vhd 1 $((1 << 24))
rc=0
"$VHD_UTIL" check -n two.vhd 2>err || rc=$?
cat err
assert_eq 22 "$rc" "exit status"
assert_eq 2 "$(wc -l <err)" "two defects, two lines"

echo ok
