#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# VMDK images tapdisk must refuse, each with one clear line from
# 'tap-ctl open' and a non-zero exit, tapdisk staying up: variants other
# than monolithicSparse and monolithicFlat (named in the message), a
# corrupt magic, a grain directory or grain past the end of the file,
# and other damage.  Then a sparse image whose grain directories lost
# their entries: tapdisk rebuilds the tables at open and serves it.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG"
need_cmd qemu-img qemu-io
cd "$TMPDIR"
td_cleanup TD_PID
MINOR=9

# put_le FILE OFFSET BYTES VALUE: a little-endian field.
put_le() {
	local f=$1 off=$2 n=$3 v=$4 i s=
	for ((i = 0; i < n; i++)); do
		s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
	done
	printf "$s" | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null
}
u64() { od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
u32() { od -A n -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }

run qemu-img create -q -f vmdk good.vmdk 16M
run qemu-io -f vmdk -c 'write -P 0x3c 0 256k' good.vmdk >/dev/null
gd=$(u64 good.vmdk 56)
rgd=$(u64 good.vmdk 48)
gt0=$(u32 good.vmdk $((gd * 512)))
overhead=$(u64 good.vmdk 64)

for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized; do
	run qemu-img create -q -f vmdk -o subformat=$sub $sub.vmdk 16M
done
cat >vmfs.vmdk <<'DESC'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 32768 VMFS "vmfs-flat.vmdk"
DESC
truncate -s 16M vmfs-flat.vmdk
# monolithicFlat variations, from a good one.
run qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 16M
sed 's/^RW /RDONLY /' flat.vmdk >rdonly.vmdk
sed 's/^parentCID=.*/parentCID=1234abcd/' flat.vmdk >delta.vmdk
sed 's/"flat-flat.vmdk"/"gone-flat.vmdk"/' flat.vmdk >noextent.vmdk
sed 's/"flat-flat.vmdk"/"short-flat.vmdk"/' flat.vmdk >short.vmdk
truncate -s 1M short-flat.vmdk
sed '/^RW /p' flat.vmdk >twoext.vmdk
sed 's/^createType=.*/createType="monolithicFlat"/;/^createType/d' \
	flat.vmdk >notype.vmdk
head -c 600 /dev/urandom >random.vmdk
# Sparse damage.
cp good.vmdk badmagic.vmdk
printf 'XXXX' | dd of=badmagic.vmdk conv=notrunc 2>/dev/null
cp good.vmdk cowd.vmdk
printf 'COWD' | dd of=cowd.vmdk conv=notrunc 2>/dev/null
cp good.vmdk gdeof.vmdk
put_le gdeof.vmdk 56 8 $((1 << 30))
cp good.vmdk rgdeof.vmdk
put_le rgdeof.vmdk 48 8 $((1 << 30))
cp good.vmdk gteof.vmdk
put_le gteof.vmdk $((gd * 512)) 4 $((1 << 28))
cp good.vmdk graineof.vmdk
put_le graineof.vmdk $((gt0 * 512)) 4 $((1 << 28))
cp good.vmdk grainmeta.vmdk
put_le grainmeta.vmdk $((gt0 * 512 + 4)) 4 2
cp good.vmdk compressed.vmdk
put_le compressed.vmdk 8 4 $(((1 << 16) | 3))
cp good.vmdk grainsize.vmdk
put_le grainsize.vmdk 20 8 100
cp good.vmdk nltest.vmdk
printf '\n \n\n' | dd of=nltest.vmdk bs=1 seek=73 conv=notrunc 2>/dev/null
cp good.vmdk capacity.vmdk
put_le capacity.vmdk 12 8 65536
cp good.vmdk version.vmdk
put_le version.vmdk 4 4 9
head -c 300 good.vmdk >cut.vmdk

td_start
log "tapdisk $TD_PID"

# refused FILE REGEX [-R]: open must fail with one line matching REGEX.
refused() {
	expect_fail "$TAP_CTL" open -p "$TD_PID" -m $MINOR ${3:-} \
		-a "vmdk:$TMPDIR/$1"
	assert_match "$2" "$FAIL_MSG" "message for $1"
	assert_match "state=0x0 args=-" "$("$TAP_CTL" list -p "$TD_PID")" \
		"state after refusing $1"
}

log "other variants, named"
refused twoGbMaxExtentSparse.vmdk "variant 'twoGbMaxExtentSparse' is not supported"
refused twoGbMaxExtentFlat.vmdk "variant 'twoGbMaxExtentFlat' is not supported"
refused streamOptimized.vmdk "variant 'streamOptimized' is not supported"
refused vmfs.vmdk "variant 'vmfs' is not supported"
refused cowd.vmdk "vmfsSparse"
refused compressed.vmdk "compressed grains.*streamOptimized"
refused delta.vmdk "delta VMDK with a parent"
log "corrupt images"
refused badmagic.vmdk "badmagic.vmdk: not a VMDK"
refused random.vmdk "random.vmdk: not a VMDK"
refused cut.vmdk "cut.vmdk: .*(short|cut)"
refused missing.vmdk "missing.vmdk: No such file"
refused gdeof.vmdk "grain directory at sector 1073741824 is past the end"
refused rgdeof.vmdk "redundant grain directory at sector 1073741824 is past the end"
refused gteof.vmdk "grain table 0 at sector 268435456 is past the end"
refused graineof.vmdk "grain 0 at sector 268435456 is past the end"
refused grainmeta.vmdk "grain 1 points into the metadata"
refused grainsize.vmdk "grain size 100"
refused nltest.vmdk "line-end"
refused capacity.vmdk "header says 65536 sectors, the descriptor 32768"
refused version.vmdk "version 9"
refused noextent.vmdk "gone-flat.vmdk"
refused short.vmdk "short-flat.vmdk has 1048576 bytes"
refused twoext.vmdk "2 extents"
refused notype.vmdk "no createType"
refused rdonly.vmdk "RDONLY; open the image read-only"
log "a RDONLY extent opens read-only"
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -R -a "vmdk:$TMPDIR/rdonly.vmdk" \
	--rw read --ops 16 --model rdonly.model

log "grain directory entries lost: tables rebuilt at open"
qemu-img convert -f vmdk -O raw good.vmdk good.raw
# nogt1: only the primary entry lost, the redundant table gives the data;
# nogt2: both lost, so table 0's grains are gone: the model starts at zeros.
cp good.vmdk nogt1.vmdk
put_le nogt1.vmdk $((gd * 512)) 4 0
cp nogt1.vmdk nogt2.vmdk
put_le nogt2.vmdk $((rgd * 512)) 4 0
for n in 1 2; do
	img=nogt$n.vmdk
	init=zero
	[ $n = 1 ] && init=file:good.raw
	before=$(file_size $img)
	run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/$img" \
		-d 32 --bs 512-128k --rw randrw --ops 1000 --seed 71 \
		--model-init $init --model nogt$n.model
	[ "$(file_size $img)" -gt "$before" ] || die "$img: no table rebuilt"
	[ "$(u32 $img $((gd * 512)))" -ge "$overhead" ] ||
		die "$img: grain directory entry 0 not rebuilt"
	[ "$(u32 $img $((rgd * 512)))" -gt 0 ] ||
		die "$img: redundant directory entry 0 not rebuilt"
	run qemu-img check -f vmdk $img
	run qemu-img convert -f vmdk -O raw $img nogt.raw
	run "$TD_RIG" verify --model nogt$n.model --image nogt.raw
done

log "a redundant table left behind by a crash is made equal at open"
cp good.vmdk rgtdiff.vmdk
rgt0=$(u32 rgtdiff.vmdk $((rgd * 512)))
put_le rgtdiff.vmdk $((rgt0 * 512 + 8)) 4 0
[ "$(u32 rgtdiff.vmdk $((rgt0 * 512 + 8)))" != "$(u32 rgtdiff.vmdk $((gt0 * 512 + 8)))" ] ||
	die "test setup: the copies do not differ"
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/rgtdiff.vmdk" \
	--rw read --ops 16 --model-init file:good.raw --model rgtdiff.model
assert_eq "$(u32 rgtdiff.vmdk $((gt0 * 512 + 8)))" \
	"$(u32 rgtdiff.vmdk $((rgt0 * 512 + 8)))" "redundant GTE 2 after open"

log "and a good image still serves I/O"
run "$TD_RIG" run -p "$TD_PID" -m $MINOR -a "vmdk:$TMPDIR/good.vmdk" \
	--ops 200 --model-init file:good.raw --model good.model
td_stop "$TD_PID"
TD_PID=
echo ok
