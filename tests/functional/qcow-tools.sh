#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# qcow-create, img2qcow and qcow2raw: -h, bad usage (one line, status
# 22), what each image looks like (QEMU agrees on size and contents,
# backing file recorded, extension fields), sparse conversion skipping
# zero clusters, progress with -p, round trips raw -> qcow -> raw, and a
# chain flattened by qcow2raw.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

CREATE=$BINDIR/qcow-create
IMG2QCOW=$BINDIR/img2qcow
QCOW2RAW=$BINDIR/qcow2raw
need_built "$CREATE" "$IMG2QCOW" "$QCOW2RAW"
need_cmd qemu-img qemu-io
cd "$TMPDIR"
MiB=1048576

# be32 FILE OFFSET: a big-endian u32 of FILE.
be32() {
	echo $((16#$(od -An -t x4 --endian=big -j "$2" -N 4 "$1" | tr -d ' ')))
}

log "help and usage"
for tool in "$CREATE" "$IMG2QCOW" "$QCOW2RAW"; do
	out=$("$tool" -h)
	assert_match "^usage: ${tool##*/} " "$out" "-h of $tool"
	expect_fail "$tool"
	assert_eq 22 "$(exit_status "$tool")" "status of $tool without arguments"
	expect_fail "$tool" -x a b
done
expect_fail "$CREATE" 0 zero.qcow
expect_fail "$CREATE" 12x bad.qcow
expect_fail "$CREATE" 8 a.qcow b c d
expect_fail "$CREATE" -p 8 x.qcow missing.raw
expect_fail "$IMG2QCOW" out.qcow missing.raw
expect_fail "$QCOW2RAW" out.raw missing.qcow
[ ! -e out.qcow ] || die "img2qcow left a file behind"

log "qcow-create"
run "$CREATE" 100 plain.qcow
run "$CREATE" -r 100 opt.qcow
run "$CREATE" -p 20 pre.qcow
mkrandom base.raw $((20 * MiB)) qcow-tools
run "$CREATE" 20 over.qcow base.raw
for img in plain opt pre over; do
	info=$(qemu-img info -f qcow $img.qcow)
	assert_match "file format: qcow" "$info"
	# blktap's extension, with the L1 table on a page boundary.
	assert_eq $((16#58454efb)) "$(be32 $img.qcow 48)" "xmagic of $img"
	assert_eq 0 $(($(be32 $img.qcow 44) % 4096)) "L1 alignment of $img"
done
assert_match "virtual size: 100 MiB" "$(qemu-img info plain.qcow)"
assert_match "backing file: $TMPDIR/base.raw" "$(qemu-img info over.qcow)"
assert_eq 1 "$(be32 plain.qcow 56)" "min_cluster_alloc without -r"
assert_eq 512 "$(be32 opt.qcow 56)" "min_cluster_alloc with -r"
assert_eq 3 "$(be32 plain.qcow 60)" "flags: sparse, big-endian L1"
assert_eq 2 "$(be32 pre.qcow 60)" "flags of a preallocated image"
[ "$(file_size plain.qcow)" -le 16384 ] || die "an empty image is not small"
[ "$(file_size pre.qcow)" -ge $((20 * MiB)) ] || die "-p did not preallocate"
[ "$(du -k pre.qcow | cut -f1)" -ge $((20 * 1024)) ] ||
	die "-p did not allocate the blocks"
for img in plain opt pre; do
	qemu-img convert -f qcow -O raw $img.qcow $img.raw
	[ -z "$(tr -d '\0' <$img.raw | head -c 1)" ] || die "$img is not zeros"
done
run "$QCOW2RAW" over.raw over.qcow
cmp_files base.raw over.raw

log "img2qcow: sparse, zero clusters skipped; qcow2raw gives it back"
mkrandom data.raw $((3 * MiB)) qcow-tools-data
truncate -s $((40 * MiB)) src.raw
dd if=data.raw of=src.raw bs=1M seek=10 conv=notrunc status=none
dd if=data.raw of=src.raw bs=4096 count=1 seek=9000 conv=notrunc status=none
printf 'x' | dd of=src.raw bs=1 seek=$((40 * MiB - 1)) conv=notrunc status=none
"$IMG2QCOW" -p conv.qcow src.raw 2>progress.txt ||
	die "img2qcow -p failed: $(cat progress.txt)"
assert_match "100%" "$(tr '\r' '\n' <progress.txt | tail -n 1)" "progress"
size=$(file_size conv.qcow)
log "conv.qcow: $size bytes for 3 MiB + 8 KiB of data"
[ "$size" -lt $((4 * MiB)) ] || die "img2qcow did not skip zero clusters"
qemu-img convert -f qcow -O raw conv.qcow qemu.raw
cmp_files src.raw qemu.raw
"$QCOW2RAW" -p back.raw conv.qcow 2>progress.txt ||
	die "qcow2raw -p failed: $(cat progress.txt)"
assert_match "100%" "$(tr '\r' '\n' <progress.txt | tail -n 1)" "progress"
cmp_files src.raw back.raw
[ "$(du -k back.raw | cut -f1)" -lt $((8 * 1024)) ] ||
	die "qcow2raw did not leave holes"
# An odd source size is padded to whole sectors.
head -c 1000 data.raw >odd.raw
run "$IMG2QCOW" odd.qcow odd.raw
run "$QCOW2RAW" odd.back odd.qcow
assert_eq 1024 "$(file_size odd.back)" "padded size"
cmp -n 1000 odd.raw odd.back || die "odd-sized data differs"

log "qcow2raw flattens a chain: qcow over qcow over raw, QEMU's writes"
run "$CREATE" 20 mid.qcow base.raw
run qemu-io -f qcow -c 'write -P 0x31 1M 2M' mid.qcow >/dev/null
run qemu-img create -q -f qcow -b mid.qcow -F qcow top.qcow
run qemu-io -f qcow -c 'write -P 0x32 2M 64k' top.qcow >/dev/null
run "$QCOW2RAW" flat.raw top.qcow
qemu-img convert -f qcow -O raw top.qcow qemu-flat.raw
cmp_files qemu-flat.raw flat.raw
echo ok
