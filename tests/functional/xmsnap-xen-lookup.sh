#!/usr/bin/env bash
# xmsnap-xen against a xenstore served from a file (tests/tools/
# fake-xenstored; libxenstore finds it through XENSTORED_PATH): a domain
# by name or domid, a disk by any of its names (xvda, d0, 51712), which
# node blkback exports (physical-device decides: physical-device-path,
# params, then the node sysfs names), the listing of every disk in devid
# order without CD-ROMs, the backend found without the frontend's link,
# and every failure as one line naming what is wrong: no xenstore, no such
# domain or disk, a node that is not the physical device, a refused read,
# bad usage.  pause cannot work without Xen: it must say so in one line.
# The real thing, with xmsnap, runs in tests/xen.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

X=$BINDIR/xmsnap-xen
need_built "$X" "$TOOLSDIR/fake-xenstored"
cd "$TMPDIR"
XS_PID=
td_cleanup XS_PID

mknod blk0 b 254 0 2>/dev/null && mknod blk1 b 254 1 && mknod other b 254 9 ||
	skip "cannot make block device nodes (mknod)"
# A block device sysfs knows, with its node in /dev: for the sysfs fallback.
sysdev=
for u in /sys/dev/block/*/uevent; do
	[ -r "$u" ] || continue
	n=$(sed -n 's/^DEVNAME=//p' "$u")
	[ -n "$n" ] && [ -b "/dev/$n" ] || continue
	sysdev=${u%/uevent}
	sysdev=${sysdev##*/}
	sysname=$n
	sysnode=/dev/$n
	break
done

be=/local/domain/0/backend/vbd
cat >tree <<EOF
/local/domain/0/name Domain-0
/local/domain/3/name guest1
/local/domain/3/device/vbd/51712/backend $be/3/51712
/local/domain/3/device/vbd/51728/backend $be/3/51728
/local/domain/3/device/vbd/768/backend $be/3/768
/local/domain/3/device/vbd/5632/backend $be/3/5632
/local/domain/3/device/vbd/2048/backend $be/3/2048
$be/3/51712/dev xvda
$be/3/51712/params $PWD/blk0
$be/3/51712/physical-device fe:0
$be/3/51712/physical-device-path $PWD/blk0
$be/3/51728/dev xvdb
$be/3/51728/params $PWD/blk1
$be/3/51728/device-type disk
$be/3/768/dev hda
$be/3/768/params $PWD/other
$be/3/768/physical-device fe:1
$be/3/768/physical-device-path $PWD/blk1
$be/3/2048/dev sda
$be/3/2048/params $PWD/blk0
$be/3/2048/physical-device fe:0
$be/3/2048/physical-device-path $PWD/other
$be/3/5632/dev hdc
$be/3/5632/device-type cdrom
$be/3/5632/params $PWD/blk1
/local/domain/4/name guest2
/local/domain/4/device/vbd/51712/state 4
$be/4/51712/dev xvda
$be/4/51712/params $PWD/blk1
/local/domain/4/device/vbd/51728/backend $be/4/51728
$be/4/51728/dev xvdb
$be/4/51728/params $PWD/regular
$be/4/51728/physical-device zz
/local/domain/5/name guest3
/local/domain/5/device/vbd/51712/backend $be/5/51712
$be/5/51712/dev xvda
$be/5/51712/params !EACCES
/local/domain/6/name guest4
/local/domain/7/name guest5
/local/domain/7/device/vbd/51712/backend $be/7/51712
$be/7/51712/params nonexistent
$be/7/51712/physical-device ${sysdev:-fe:77}
/local/domain/7/device/vbd/51728/backend $be/7/51728
$be/7/51728/params ${sysname:-none}
EOF
touch regular

export XENSTORED_PATH=$TMPDIR/xs.sock
# xs_start: (re)start the fake xenstore on the tree as it is now.
xs_start() {
	if [ -n "$XS_PID" ]; then
		kill "$XS_PID"
		wait "$XS_PID" 2>/dev/null || true
		rm -f "$XENSTORED_PATH"
	fi
	"$TOOLSDIR/fake-xenstored" "$XENSTORED_PATH" tree 2>>xs.log &
	XS_PID=$!
	for _ in $(seq 50); do
		[ -S "$XENSTORED_PATH" ] && return 0
		sleep 0.1
	done
	die "fake-xenstored did not start: $(cat xs.log)"
}
log "no xenstore"
fails_with 1 '^xmsnap-xen: cannot reach xenstore .*: No such file or directory$' \
	"$X" disk guest1 xvda

xs_start

log "a disk by each of its names, the domain by name and by domid"
for args in "guest1 xvda" "3 xvda" "guest1 d0" "guest1 51712"; do
	# shellcheck disable=SC2086 # two words
	assert_eq "$PWD/blk0" "$("$X" disk $args)" "disk $args"
done
log "without physical-device (no hotplug yet), params is the device"
assert_eq "$PWD/blk1" "$("$X" disk guest1 xvdb)"
log "physical-device decides: params is another device, physical-device-path is it"
assert_eq "$PWD/blk1" "$("$X" disk guest1 hda)"
log "and the other way round"
assert_eq "$PWD/blk0" "$("$X" disk guest1 sda)"
log "no backend link in the frontend: dom0's backend directory"
assert_eq "$PWD/blk1" "$("$X" disk guest2 xvda)"
log "every disk, in devid order, without the CD-ROM"
assert_eq "hda $PWD/blk1
sda $PWD/blk0
xvda $PWD/blk0
xvdb $PWD/blk1" "$("$X" disks guest1)"
assert_eq "$("$X" disks guest1)" "$("$X" disks 3)" "disks by domid"
if [ -n "$sysdev" ]; then
	log "params is no device: the node sysfs names for physical-device $sysdev"
	# physical-device is hex in xenstore.
	hex=$(printf '%x:%x' "${sysdev%:*}" "${sysdev#*:}")
	sed -i "s|^\($be/7/51712/physical-device\) .*|\1 $hex|" tree
	xs_start
	assert_eq "$sysnode" "$("$X" disk guest5 xvda)"
	log "a relative params is under /dev"
	assert_eq "$sysnode" "$("$X" disk guest5 xvdb)"
else
	log "(no block device in /sys/dev/block with a node in /dev: sysfs fallback not tried)"
fi

log "failures: one line each"
fails_with 1 '^xmsnap-xen: no such domain: guest9$' "$X" disk guest9 xvda
fails_with 1 '^xmsnap-xen: no such domain: 12 \(no /local/domain/12 in xenstore\)$' \
	"$X" disks 12
fails_with 1 '^xmsnap-xen: domain guest1 has no disk xvdc \(no device/vbd/51744\)$' \
	"$X" disk guest1 xvdc
fails_with 1 '^xmsnap-xen: domain guest4 has no disks' "$X" disks guest4
fails_with 1 "^xmsnap-xen: domain guest2 disk xvdb: $be/4/51728/physical-device is 'zz', not MAJOR:MINOR\$" \
	"$X" disk guest2 xvdb
fails_with 1 "^xmsnap-xen: domain guest2 disk xvdb: " "$X" disks guest2
fails_with 1 "^xmsnap-xen: xenstore: cannot read $be/5/51712/params: Permission denied\$" \
	"$X" disk guest3 xvda
sed -i "s|^\($be/3/51712/physical-device\) .*|\1 fe:3|" tree
xs_start
fails_with 1 "^xmsnap-xen: domain guest1 disk xvda: no block device fe:3 \(physical-device of $be/3/51712\) in /dev; params is '$PWD/blk0'\$" \
	"$X" disk guest1 xvda
fails_with 1 "^xmsnap-xen: pause: domain Domain-0 is dom0 \(domid 0\); it cannot be paused\$" \
	"$X" pause 0
fails_with 1 "^xmsnap-xen: pause: cannot open libxenctrl \(/dev/xen/privcmd\): " \
	"$X" pause guest1
fails_with 1 "^xmsnap-xen: unpause: cannot open libxenctrl \(/dev/xen/privcmd\): " \
	"$X" unpause 3

log "bad usage: status 2, before xenstore is asked"
fails_with 2 "^xmsnap-xen: no command \(try -h\)\$" "$X"
fails_with 2 "^xmsnap-xen: unknown command 'snap' \(try -h\)\$" "$X" snap guest1
fails_with 2 "^xmsnap-xen: disk: needs DOMAIN VDEV \(try -h\)\$" "$X" disk guest1
fails_with 2 "^xmsnap-xen: disks: needs DOMAIN \(try -h\)\$" "$X" disks
fails_with 2 "^xmsnap-xen: pause: needs DOMAIN \(try -h\)\$" "$X" pause a b
for v in xvdA xvda0 hde sdq d0p0 0 vda; do
	fails_with 2 "^xmsnap-xen: '$v' is not a virtual disk name" "$X" disk guest1 "$v"
done
"$X" -h | grep -q '^usage: xmsnap-xen disk DOMAIN VDEV' || die "-h prints no usage"
for v in disk disks pause unpause; do
	grep -q "^\.B $v\b\|^\.BR $v\b\|^\.SS $v\b" "$SRCDIR/man/xmsnap-xen.8" ||
		die "man/xmsnap-xen.8 does not describe '$v'"
done
if command -v groff >/dev/null 2>&1; then
	warn=$(LC_ALL=C groff -man -ww -z "$SRCDIR/man/xmsnap-xen.8" 2>&1)
	[ -z "$warn" ] || die "groff warns about man/xmsnap-xen.8: $warn"
fi
log "ok"
