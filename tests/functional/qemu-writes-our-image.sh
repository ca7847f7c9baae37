#!/usr/bin/env bash
# QEMU writes to an image we created: its first data block lands right
# after the BAT, over our batmap.  We must still read the data, check must
# explain the situation in one line, repair must move the block out of the
# way (check is then clean) and neither we nor QEMU may see different data.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd qemu-io qemu-img python3
cd "$TMPDIR"

# expected SIZE_MIB: the virtual disk after QEMU's two writes.
expected() {
	python3 - "$1" <<'PY'
import sys
size = int(sys.argv[1]) << 20
d = bytearray(size)
d[0:1 << 20] = b'\xab' * (1 << 20)
d[5 << 20:(5 << 20) + 65536] = b'\xcd' * 65536
sys.stdout.buffer.write(d)
PY
}

for size in 10 100; do
	img=q$size.vhd
	log "$size MiB: create, then QEMU writes"
	run "$VHD_UTIL" create -n "$img" -s $size
	run qemu-io -f vpc -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 5M 64k' "$img"
	expected $size >want.raw

	log "we read what QEMU wrote"
	"$VHD_UTIL" read -n "$img" -r 0 -c $((size << 11)) >got.raw
	cmp_files want.raw got.raw
	"$TOOLSDIR/vhd-cat" "$img" >got2.raw
	cmp_files want.raw got2.raw

	log "check explains it in one line"
	expect_fail "$VHD_UTIL" check -n "$img"
	assert_match "batmap area is occupied by data block 0 .*repair" "$FAIL_MSG"
	expect_fail "$VHD_UTIL" check -n "$img" -b -p
	log "check -B (ignore the batmap) accepts it"
	run "$VHD_UTIL" check -n "$img" -B

	log "repair, then check is clean and the data unchanged"
	run "$VHD_UTIL" repair -n "$img"
	run "$VHD_UTIL" check -n "$img" -b
	"$VHD_UTIL" read -n "$img" -r 0 -c $((size << 11)) >got.raw
	cmp_files want.raw got.raw
	run qemu-img convert -f vpc -O raw "$img" qemu.raw
	cmp_files want.raw qemu.raw

	log "both tools keep working on the repaired image"
	run qemu-io -f vpc -c 'write -P 0xef 3M 4k' "$img"
	python3 - <<'PY'
with open('want.raw', 'r+b') as f:
    f.seek(3 << 20); f.write(b'\xef' * 4096)
PY
	run "$VHD_UTIL" check -n "$img" -b
	printf '\x11%.0s' $(seq 512) >sec.bin
	"$TOOLSDIR/vhd-write" "$img" 100 sec.bin
	python3 - <<'PY'
with open('want.raw', 'r+b') as f:
    f.seek(100 * 512); f.write(b'\x11' * 512)
PY
	run "$VHD_UTIL" check -n "$img" -b
	"$VHD_UTIL" read -n "$img" -r 0 -c $((size << 11)) >got.raw
	cmp_files want.raw got.raw
	run qemu-img convert -f vpc -O raw "$img" qemu.raw
	cmp_files want.raw qemu.raw
done

echo ok
