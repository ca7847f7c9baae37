#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make bench, in the QEMU guest: fio on a tapdev against fio on a loop
# device with direct I/O over the same file, and on the file itself.
# Not part of the guest suite: bench/run boots it with
#   tests/vm/check-vm --script bench/vm/99-bench.sh --bin /usr/sbin/losetup
#
# Contenders, on one file of non-zero data on the guest's ext4 data disk
# (virtio), each driven by fio (libaio, O_DIRECT) with the same workload:
#   file        the file itself;
#   loop-dio    /dev/loopN over the file, losetup --direct-io=on;
#   tapdev-aio  /dev/xen/blktap-2/tapdevN, tapdisk aio: on the file;
#   tapdev-vhd  a tapdev on a dynamic VHD, every block allocated.
# Workloads: 4 KiB random read and write at depth 32, 1 MiB sequential read
# and write at depth 8.  Each repetition runs every contender in turn, in
# reverse order every other time.
# One line per run on the console (run-vm -s prints it without the
# "VMTEST SHOW " prefix):
#   VMTEST SHOW BENCH WORKLOAD CONTENDER REP IOPS MIBPS
# Kernel command line: bench.size_mb= (256), bench.seconds= (5),
# bench.reps= (3).
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
T=vm-bench

size=256
secs=5
reps=3
# shellcheck disable=SC2013 # words, as /init reads it
for arg in $(cat /proc/cmdline); do
	case $arg in
	bench.size_mb=*) size=${arg#*=} ;;
	bench.seconds=*) secs=${arg#*=} ;;
	bench.reps=*) reps=${arg#*=} ;;
	esac
done

dir=/data/bench
raw=$dir/data.raw
vhd=$dir/data.vhd
rm -rf $dir
mkdir -p $dir
LOOP=
cleanup_loop() {
	[ -n "$LOOP" ] && losetup -d "$LOOP"
	vt_cleanup
}
trap cleanup_loop EXIT

# fio_iops FILE RW BS DEPTH SECONDS: prints "IOPS MIBPS".
fio_iops() {
	fio --name=bench --filename="$1" --size="${size}M" --ioengine=libaio \
		--direct=1 --rw="$2" --bs="$3" --iodepth="$4" \
		--runtime="$5" --time_based --norandommap --randrepeat=0 \
		--output-format=terse --terse-version=3 2>/tmp/vmtest/fio.err |
		awk -F';' '$1 == 3 { printf "%.0f %.1f\n", $8 + $49, ($7 + $48) / 1024 }'
}

log "filling $raw ($size MiB of fio's pseudo-random buffers)"
run fio --name=fill --filename=$raw --size="${size}M" --rw=write --bs=1m \
	--direct=1 --ioengine=libaio --iodepth=8 --output-format=terse

# The loop device, with direct I/O: the kernel's own way to a file.
if ! grep -qw loop /proc/modules && [ ! -e /sys/module/loop ]; then
	run insmod "/lib/modules/$(uname -r)/loop.ko"
fi
# util-linux's losetup (busybox's has no --direct-io, and busybox sh runs
# its own applet before anything on PATH).
LOSETUP=/usr/sbin/losetup
$LOSETUP --help 2>&1 | grep -q direct-io ||
	die "no losetup with --direct-io in the guest (check-vm --bin /usr/sbin/losetup)"
LOOP=$($LOSETUP --direct-io=on --show -f $raw) || die "losetup $raw failed"
echo "    $LOOP"
dio=$(cat "/sys/block/${LOOP#/dev/}/loop/dio")
[ "$dio" = 1 ] || die "$LOOP does not use direct I/O (loop/dio is $dio)"

tap_create -a aio:$raw
aio_dev=$TAP_DEV
run vhd-util create -n $vhd -s "$size"
tap_create -a vhd:$vhd
vhd_dev=$TAP_DEV
log "allocating every block of $vhd through $vhd_dev"
run fio --name=fill --filename="$vhd_dev" --size="${size}M" --rw=write \
	--bs=1m --direct=1 --ioengine=libaio --iodepth=8 --output-format=terse
blocks=$(vhd-util query -n $vhd -a)
[ "$blocks" = $(((size + 1) / 2)) ] ||
	die "$vhd has $blocks blocks allocated, not $(((size + 1) / 2))"

for w in "4k-randread randread 4k 32" "4k-randwrite randwrite 4k 32" \
	 "1m-seqread read 1m 8" "1m-seqwrite write 1m 8"; do
	# shellcheck disable=SC2086 # the fields of $w
	set -- $w
	name=$1 rw=$2 bs=$3 depth=$4
	rep=1
	while [ $rep -le "$reps" ]; do
		# Odd repetitions in this order, even ones reversed
		# (bench/run takes the median of per-repetition ratios).
		order="file loop-dio tapdev-aio tapdev-vhd"
		[ $((rep % 2)) = 0 ] && order="tapdev-vhd tapdev-aio loop-dio file"
		for c in $order; do
			case $c in
			file) f=$raw ;;
			loop-dio) f=$LOOP ;;
			tapdev-aio) f=$aio_dev ;;
			tapdev-vhd) f=$vhd_dev ;;
			esac
			r=$(fio_iops "$f" "$rw" "$bs" "$depth" "$secs")
			[ -n "$r" ] || die "fio on $f ($name) gave no result: $(cat /tmp/vmtest/fio.err)"
			echo "VMTEST SHOW BENCH $name $c $rep $r"
		done
		rep=$((rep + 1))
	done
done

run losetup -d "$LOOP"
LOOP=
pass vm-bench
