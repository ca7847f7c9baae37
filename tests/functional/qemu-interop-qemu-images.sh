#!/usr/bin/env bash
# Images made and written by QEMU (qemu-img create -f vpc, qemu-io): our
# check accepts them, our reading equals qemu-img convert's, and what we
# write into them QEMU reads back the same (and the other way round).
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd qemu-img qemu-io
[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
WRITE=$TOOLSDIR/vhd-write
CAT=$TOOLSDIR/vhd-cat
{ [ -x "$WRITE" ] && [ -x "$CAT" ]; } || die "test tools not built in $TOOLSDIR"
cd "$TMPDIR"

MiB=1048576
mkrandom w1m $MiB w1m
mkrandom w4k 4096 w4k
mkrandom w2m $((2 * MiB)) w2m

# same_as_qemu IMAGE EXPECTED: our reading, QEMU's reading and EXPECTED
# (a raw file of the virtual disk) are all identical.
same_as_qemu() {
	"$CAT" "$1" >ours.raw
	qemu-img convert -f vpc -O raw "$1" qemu.raw
	cmp_files qemu.raw ours.raw
	cmp_files "$2" ours.raw
}

# put RAW SECTOR FILE: the same write on the expected raw image.
put() {
	dd if="$3" of="$1" bs=512 seek="$2" conv=notrunc status=none
}

for sub in dynamic fixed; do
	for force in off on; do
		img=qemu-$sub-$force.vhd
		log "$img"
		run qemu-img create -q -f vpc -o subformat=$sub,force_size=$force "$img" 20M
		size=$("$CAT" "$img" | wc -c)
		# QEMU's own idea of the size must be ours too.
		qemu-img convert -f vpc -O raw "$img" qemu.raw
		qsize=$(file_size qemu.raw)
		assert_eq "$qsize" "$size" "virtual size"
		if [ $force = on ]; then
			assert_eq $((20 * MiB)) "$size" "force_size keeps the size"
		fi
		run "$VHD_UTIL" check -n "$img"

		# QEMU writes; both read the same.
		run qemu-io -f vpc -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 7M 512k' \
			"$img" >/dev/null
		head -c "$size" /dev/zero >expect.raw
		head -c $((3 * MiB)) /dev/zero | tr '\0' '\132' >p5a
		head -c $((512 * 1024)) /dev/zero | tr '\0' '\021' >p11
		put expect.raw 0 p5a
		put expect.raw $((7 * 2048)) p11
		run "$VHD_UTIL" check -n "$img"
		same_as_qemu "$img" expect.raw

		# We write: into QEMU's blocks, new blocks, across a boundary.
		run "$WRITE" "$img" 100 w1m
		put expect.raw 100 w1m
		run "$WRITE" "$img" 20000 w1m
		put expect.raw 20000 w1m
		run "$WRITE" "$img" 8190 w4k
		put expect.raw 8190 w4k
		run "$WRITE" "$img" $((size / 512 - 8)) w4k
		put expect.raw $((size / 512 - 8)) w4k
		run "$VHD_UTIL" check -n "$img"
		same_as_qemu "$img" expect.raw

		# QEMU writes again after us: new blocks go after ours.
		run qemu-io -f vpc -c 'write -P 0x77 12M 2M' -c 'write -P 0x33 1M 4k' \
			"$img" >/dev/null
		head -c $((2 * MiB)) /dev/zero | tr '\0' '\167' >p77
		head -c 4096 /dev/zero | tr '\0' '\063' >p33
		put expect.raw $((12 * 2048)) p77
		put expect.raw 2048 p33
		run "$VHD_UTIL" check -n "$img"
		same_as_qemu "$img" expect.raw

		# And we write once more over everything.
		run "$WRITE" "$img" $((11 * 2048)) w2m
		put expect.raw $((11 * 2048)) w2m
		run "$VHD_UTIL" check -n "$img"
		same_as_qemu "$img" expect.raw
	done
done

echo ok
