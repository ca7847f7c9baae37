#!/usr/bin/env bash
# vhd-util repair: a damaged primary footer, a bad header checksum, stray
# bytes after the footer and a damaged batmap are repaired; afterwards check
# passes and the data reads back unchanged.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd python3
cd "$TMPDIR"

mkrandom data $((3 << 20))
# setup NAME: a 20 MiB image with data at sectors 0 and 20000, and the
# expected virtual disk in NAME.raw.
setup() {
	rm -f "$1" "$1.raw"
	"$VHD_UTIL" create -n "$1" -s 20
	"$TOOLSDIR/vhd-write" "$1" 0 data
	"$TOOLSDIR/vhd-write" "$1" 20000 data
	"$TOOLSDIR/vhd-cat" "$1" >"$1.raw"
	[ "$(file_size "$1.raw")" -eq $((20 << 20)) ] || die "vhd-cat size"
}
# repaired NAME: repair succeeds, check is clean, the data is unchanged.
repaired() {
	run "$VHD_UTIL" repair -n "$1"
	run "$VHD_UTIL" check -n "$1" -b
	"$TOOLSDIR/vhd-cat" "$1" >"$1.after"
	cmp_files "$1.raw" "$1.after"
}
footer_off() { echo $(( ($(file_size "$1") - 512) / 512 * 512 )); }
poke() {	# poke FILE OFFSET: flip the bits of one byte
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xff]))
PY
}

log "damaged primary footer (checksum)"
setup a.vhd
size=$(file_size a.vhd)
poke a.vhd $(($(footer_off a.vhd) + 70))
expect_fail "$VHD_UTIL" check -n a.vhd
repaired a.vhd
assert_eq "$size" "$(file_size a.vhd)" "size after repair"

log "primary footer overwritten with zeros"
setup b.vhd
dd if=/dev/zero of=b.vhd bs=512 count=1 seek=$(($(footer_off b.vhd) / 512)) \
	conv=notrunc 2>/dev/null
expect_fail "$VHD_UTIL" check -n b.vhd
repaired b.vhd

log "primary footer cut off, garbage appended"
setup c.vhd
size=$(file_size c.vhd)
truncate -s $((size - 512)) c.vhd
head -c 700 /dev/urandom >>c.vhd
expect_fail "$VHD_UTIL" check -n c.vhd
repaired c.vhd
assert_eq "$size" "$(file_size c.vhd)" "size after repair"

log "damaged footer copy at offset 0"
setup d.vhd
poke d.vhd 70
expect_fail "$VHD_UTIL" check -n d.vhd
repaired d.vhd

log "stray bytes after a valid footer"
setup e.vhd
printf 'junk' >>e.vhd
expect_fail "$VHD_UTIL" check -n e.vhd
repaired e.vhd

log "bad header checksum"
setup f.vhd
poke f.vhd $((512 + 1000))
expect_fail "$VHD_UTIL" check -n f.vhd
repaired f.vhd

log "damaged batmap map (checksum)"
setup g.vhd
poke g.vhd 2560
expect_fail "$VHD_UTIL" check -n g.vhd
assert_match "batmap checksum" "$FAIL_MSG"
repaired g.vhd

log "rebuild the batmap with -b"
setup h.vhd
run "$VHD_UTIL" repair -n h.vhd -b
run "$VHD_UTIL" check -n h.vhd -b
"$TOOLSDIR/vhd-cat" h.vhd | cmp - h.vhd.raw

log "differencing image with a damaged footer"
setup base.vhd
"$VHD_UTIL" snapshot -n child.vhd -p base.vhd
"$TOOLSDIR/vhd-write" child.vhd 4096 data
"$TOOLSDIR/vhd-cat" child.vhd >child.vhd.raw
poke child.vhd $(($(footer_off child.vhd) + 3))
expect_fail "$VHD_UTIL" check -n child.vhd
repaired child.vhd
run "$VHD_UTIL" check -n child.vhd -p -b

log "a fixed image whose footer is gone cannot be repaired"
"$VHD_UTIL" create -n fixed.vhd -s 4 -r
poke fixed.vhd $(($(footer_off fixed.vhd) + 3))
expect_fail "$VHD_UTIL" repair -n fixed.vhd
assert_match "no valid footer" "$FAIL_MSG"

log "a valid image is left alone"
setup ok.vhd
cp ok.vhd ok.copy
run "$VHD_UTIL" repair -n ok.vhd
cmp_files ok.copy ok.vhd

echo ok
