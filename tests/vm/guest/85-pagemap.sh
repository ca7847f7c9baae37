#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kernel/blkback-pagemap in a guest without Xen: it loads, its counters
# are in /sys/module/blkback_pagemap/stats/, a tapdev created while it is
# loaded looks up every READ/WRITE there (all "not foreign": this kernel
# runs on no hypervisor) and tap-ctl stats shows no domid.  blktap2 pins
# the module while such a tapdev exists (rmmod refused), lets go when it
# is destroyed, works without the module, and a tapdev created before
# the module was loaded never uses it.  The module is unloaded at the end.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
need_blktap
PM=/lib/modules/$(uname -r)/blkback-pagemap.ko
S=/sys/module/blkback_pagemap/stats
[ -f "$PM" ] || skip_all "blkback-pagemap.ko was not built for $(uname -r)"
dmesg_mark

loaded() {
	grep -q '^blkback_pagemap ' /proc/modules
}

refcnt() {
	cat /sys/module/blkback_pagemap/refcnt
}

# counters: "LOOKUPS FOREIGN NOT_FOREIGN"
counters() {
	echo "$(cat $S/lookups) $(cat $S/foreign) $(cat $S/not_foreign)"
}

# rw PID MINOR: tapdisk's READ + WRITE requests.
rw() {
	echo $(($(stat_get "$1" "$2" requests.read) + \
		$(stat_get "$1" "$2" requests.write)))
}

# domains PID MINOR: "DOMID READS WRITES" per entry of tap-ctl stats'
# domains array (DOMID null for I/O without one).
domains() {
	tap-ctl stats -p "$1" -m "$2" | awk '
		/"domains": \[/ { in_d = 1; next }
		!in_d { next }
		/"domid":/ { d = $2; sub(/,$/, "", d) }
		/"read":/ && d != "" && !r { r = $2; sub(/,$/, "", r) }
		/"write":/ && d != "" && !w { w = $2; sub(/,$/, "", w) }
		/"bytes":/ { print d, r, w; d = ""; r = ""; w = "" }'
}

# io DEV TAG: direct writes of several sizes, a direct read that must
# return them, and a buffered write with sync (page-cache pages).
io() {
	f=/tmp/pm.$2
	dd if=/dev/urandom of="$f" bs=64k count=8 2>/dev/null
	run dd if="$f" of="$1" bs=64k count=8 oflag=direct
	run dd if="$f" of="$1" bs=4k count=4 seek=300 oflag=direct
	run dd if="$1" of="$f.back" bs=512k count=1 iflag=direct
	cmp "$f" "$f.back" || die "read back other data than written"
	run dd if=/dev/urandom of="$1" bs=4k count=16 seek=1000
	run sync
	rm -f "$f" "$f.back"
}

# no_domid PID MINOR: every domains entry has domid null, and there is
# one (the I/O was counted somewhere).
no_domid() {
	d=$(domains "$1" "$2")
	log "domains: $(echo "$d" | tr '\n' ';')"
	[ -n "$d" ] || die "tap-ctl stats has no domains entry after I/O"
	echo "$d" | awk '$1 != "null" { exit 1 }' ||
		die "tap-ctl stats shows a domid for I/O from this (non-Xen) kernel: $d"
}

T=pagemap-load
loaded && die "blkback_pagemap is loaded before the test"
run insmod "$PM"
loaded || die "not in /proc/modules after insmod"
for c in lookups foreign not_foreign; do
	[ -r $S/$c ] || die "no counter $S/$c"
done
[ "$(counters)" = "0 0 0" ] || die "counters start at $(counters), not 0 0 0"
[ "$(refcnt)" = 0 ] || die "refcnt is $(refcnt) with no tapdev"
pass "$T"

T=pagemap-not-foreign
run truncate -s 16M /data/t85.raw
tap_create -a aio:/data/t85.raw
[ "$(refcnt)" = 1 ] || die "refcnt is $(refcnt) with one tapdev, not 1"
dmesg | grep "tapdev$TAP_MINOR: .*features" | tail -n 1 |
	grep -q 'domids from blkback-pagemap' ||
	die "blktap2 did not log that tapdev$TAP_MINOR uses blkback-pagemap"
# shellcheck disable=SC2046 # three numbers
set -- $(counters)
l0=$1 f0=$2 n0=$3
q0=$(rw "$TAP_PID" "$TAP_MINOR") || die "no request counters in tap-ctl stats"
io "$TAP_DEV" a
# shellcheck disable=SC2046 # three numbers
set -- $(counters)
q1=$(rw "$TAP_PID" "$TAP_MINOR") || die "no request counters in tap-ctl stats"
log "lookups $l0 -> $1, foreign $f0 -> $2, not_foreign $n0 -> $3; tapdisk READ+WRITE $q0 -> $q1"
[ $((q1 - q0)) -gt 0 ] || die "tapdisk saw no requests"
# One lookup per READ/WRITE on the ring, each of them not foreign.
[ $(($1 - l0)) -eq $((q1 - q0)) ] ||
	die "$(($1 - l0)) lookups for $((q1 - q0)) READ/WRITE requests"
[ "$2" = "$f0" ] || die "$(($2 - f0)) pages counted foreign without Xen"
[ $(($3 - n0)) -eq $((q1 - q0)) ] ||
	die "$(($3 - n0)) not foreign for $((q1 - q0)) lookups"
no_domid "$TAP_PID" "$TAP_MINOR"
pass "$T"

T=pagemap-rmmod-refused
must_fail rmmod blkback_pagemap
loaded || die "blkback_pagemap was unloaded while tapdev$TAP_MINOR uses it"
[ "$(refcnt)" = 1 ] || die "refcnt is $(refcnt) after the refused rmmod"
l0=$(cat $S/lookups)
io "$TAP_DEV" b
[ "$(cat $S/lookups)" -gt "$l0" ] || die "no lookups after the refused rmmod"
pass "$T"

T=pagemap-release
tap_destroy "$TAP_PID" "$TAP_MINOR"
[ "$(refcnt)" = 0 ] || die "refcnt is $(refcnt) after the tapdev was destroyed"
run rmmod blkback_pagemap
loaded && die "still in /proc/modules after rmmod"
[ ! -e /sys/module/blkback_pagemap ] || die "its sysfs directory outlived it"
pass "$T"

T=pagemap-absent
# Without the module: I/O works, no domid.
tap_create -a aio:/data/t85.raw
dmesg | grep "tapdev$TAP_MINOR: .*features" | tail -n 1 |
	grep -q 'blkback-pagemap' &&
	die "tapdev$TAP_MINOR claims blkback-pagemap, which is not loaded"
io "$TAP_DEV" c
no_domid "$TAP_PID" "$TAP_MINOR"
# Loaded now: this tapdev does not take it, so it unloads at once.
run insmod "$PM"
io "$TAP_DEV" d
[ "$(counters)" = "0 0 0" ] ||
	die "a tapdev created before the module was loaded used it: $(counters)"
[ "$(refcnt)" = 0 ] || die "refcnt is $(refcnt), no tapdev should hold it"
run rmmod blkback_pagemap
io "$TAP_DEV" e
tap_destroy "$TAP_PID" "$TAP_MINOR"
rm -f /data/t85.raw
pass "$T"

T=pagemap-dmesg
bad=$(dmesg_bad_since)
[ -z "$bad" ] || die "kernel log: $bad"
pass "$T"
