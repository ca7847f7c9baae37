#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tap-ctl's kernel verbs (allocate, free, create, destroy, major, check)
# and tapdisk's kernel attach where the blktap2 module is not loaded (the
# host: the module itself is tested in the VM rig, tests/vm).  Each verb
# -h prints its usage; bad usage is one line and exit 2, checked before
# the kernel is; without the module each verb fails with one line saying
# so and exit 1, and makes nothing under /dev.  A tapdisk asked to attach
# to the kernel's ring says so too and keeps serving.  The man page
# documents every verb and flag, and the udev rules parse.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAP_CTL" "$TAPDISK"
[ -e /sys/module/blktap2 ] &&
	skip "the blktap2 module is loaded here: these are the no-module checks"
cd "$TMPDIR"
td_cleanup --control-dir TD_PID
KVERBS=(allocate free create destroy major check)
NOT_LOADED="blktap2 kernel module is not loaded"

truncate -s 8M raw.img
dev_before=$(ls -d /dev/xen 2>/dev/null || true)

log "tap-ctl -h lists the kernel verbs; each verb's -h"
"$TAP_CTL" -h >help 2>err || die "tap-ctl -h failed"
for v in "${KVERBS[@]}"; do
	grep -q "^  $v\b" help || die "tap-ctl -h does not list $v"
	"$TAP_CTL" "$v" -h >out 2>err || die "tap-ctl $v -h failed"
	grep -q "^usage: tap-ctl $v" out || die "tap-ctl $v -h: no usage"
	[ ! -s err ] || die "tap-ctl $v -h wrote to stderr"
done

log "usage errors come first, with exit status 2"
for v in "${KVERBS[@]}"; do
	fails_with 2 "^tap-ctl: $v: unknown option -Z\$" "$TAP_CTL" "$v" -Z
	fails_with 2 "^tap-ctl: $v: unexpected argument 'stray'\$" \
		"$TAP_CTL" "$v" stray
done
fails_with 2 "missing -a type:/path" "$TAP_CTL" create
fails_with 2 "missing -a type:/path" "$TAP_CTL" create -R -D
fails_with 2 "unknown image type 'raw'" "$TAP_CTL" create -a raw:raw.img
fails_with 2 "is not type:/path" "$TAP_CTL" create -a raw.img
fails_with 2 "missing path after 'aio:'" "$TAP_CTL" create -a aio:
fails_with 2 "invalid -t timeout '0'" "$TAP_CTL" create -a aio:raw.img -t 0
fails_with 2 "invalid -e minor 'x'" "$TAP_CTL" create -a aio:raw.img -e x
fails_with 2 "invalid -d devname 'rel/name'" \
	"$TAP_CTL" create -a aio:raw.img -d rel/name
fails_with 2 "option -a needs an argument" "$TAP_CTL" create -a
fails_with 2 "invalid -d devname ''" "$TAP_CTL" allocate -d ''
fails_with 2 "option -d needs an argument" "$TAP_CTL" allocate -d
fails_with 2 "missing -m minor" "$TAP_CTL" free
fails_with 2 "unknown option -p" "$TAP_CTL" free -p 1 -m 0
for minor in -1 1048576 x 0x1 ""; do
	fails_with 2 "invalid minor '$minor'" "$TAP_CTL" free -m "$minor"
done
fails_with 2 "missing -p pid" "$TAP_CTL" destroy -m 0
fails_with 2 "missing -m minor" "$TAP_CTL" destroy -p 1
fails_with 2 "invalid pid 'x'" "$TAP_CTL" destroy -p x -m 0
fails_with 2 "invalid minor '-1'" "$TAP_CTL" destroy -p 1 -m -1

log "create -d refuses a name that exists, before allocating anything"
touch taken
fails_with 1 "^tap-ctl: create: $TMPDIR/taken already exists\$" \
	"$TAP_CTL" create -a aio:raw.img -d "$TMPDIR/taken"

log "without the module: one line, exit status 1"
fails_with 1 "^tap-ctl: allocate: $NOT_LOADED\$" "$TAP_CTL" allocate
fails_with 1 "^tap-ctl: allocate: $NOT_LOADED\$" \
	"$TAP_CTL" allocate -d "$TMPDIR/mydisk"
[ ! -e "$TMPDIR/mydisk" ] && [ ! -L "$TMPDIR/mydisk" ] ||
	die "allocate -d made $TMPDIR/mydisk without a tap"
fails_with 1 "^tap-ctl: free: $NOT_LOADED\$" "$TAP_CTL" free -m 0
fails_with 1 "^tap-ctl: major: $NOT_LOADED\$" "$TAP_CTL" major
fails_with 1 "^tap-ctl: check: $NOT_LOADED\$" "$TAP_CTL" check
fails_with 1 "^tap-ctl: create: $NOT_LOADED\$" \
	"$TAP_CTL" create -a aio:raw.img
fails_with 1 "^tap-ctl: create: $NOT_LOADED\$" \
	"$TAP_CTL" create -a "vhd:$TMPDIR/none.vhd" -R -t 5 -D
fails_with 1 "^tap-ctl: destroy: $NOT_LOADED\$" "$TAP_CTL" destroy -p 1 -m 0
# check says it on stderr, nothing on stdout.
"$TAP_CTL" check >out 2>/dev/null && die "check succeeded without the module"
[ ! -s out ] || die "check printed on stdout: $(cat out)"

log "create started no tapdisk, and nothing was made under /dev"
assert_eq "" "$("$TAP_CTL" list)" "list after the failed creates"
assert_eq "$dev_before" "$(ls -d /dev/xen 2>/dev/null || true)" \
	"/dev/xen after the failed verbs"

log "tapdisk: attach to the kernel's ring says there is no module"
td_start
P=$TD_PID
fails_with 1 "^tap-ctl: attach: no ring device /dev/xen/blktap-2/blktap3: the $NOT_LOADED\$" \
	"$TAP_CTL" attach -p "$P" -m 3
assert_eq "pid=$P minor=- state=0x0 args=-" "$("$TAP_CTL" list)" \
	"the failed attach bound nothing"
run "$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img
fails_with 1 "^tap-ctl: attach: no ring device /dev/xen/blktap-2/blktap3: " \
	"$TAP_CTL" attach -p "$P" -m 3
assert_eq "pid=$P minor=3 state=0x2 args=aio:$TMPDIR/raw.img" \
	"$("$TAP_CTL" list)" "the open disk after a failed attach"
fails_with 1 "unknown minor 4" "$TAP_CTL" attach -p "$P" -m 4
# No kernel ring: close has no device to remove and just closes.
run "$TAP_CTL" close -p "$P" -m 3
fails_with 1 "^tap-ctl: open: .*\(-e\) is not supported" \
	"$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img -e 2
log "destroy of a live tapdisk, without the module, changes nothing"
run "$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img
fails_with 1 "^tap-ctl: destroy: $NOT_LOADED\$" "$TAP_CTL" destroy -p "$P" -m 3
assert_eq "pid=$P minor=3 state=0x2 args=aio:$TMPDIR/raw.img" \
	"$("$TAP_CTL" list)" "the disk after a failed destroy"
run "$TAP_CTL" close -p "$P" -m 3
td_stop "$P"
TD_PID=

log "man pages (tap-ctl-usage checks every verb's flags)"
grep -q '^\.SH THE KERNEL RING' "$SRCDIR/man/tapdisk.8" ||
	die "tapdisk.8 does not describe the kernel ring"
if command -v groff >/dev/null 2>&1; then
	for page in tap-ctl tapdisk; do
		warn=$(LC_ALL=C groff -man -ww -z "$SRCDIR/man/$page.8" 2>&1)
		[ -z "$warn" ] || die "groff warns about $page.8: $warn"
	done
fi

log "udev rules"
rules=$SRCDIR/scripts/udev/60-blktap2.rules
[ -f "$rules" ] || die "$rules is missing"
for name in control blktap tapdev; do
	grep -q "$name" "$rules" || die "the udev rules do not mention $name"
done
# udevadm reads rules only from the system's directories: give it a
# private one in a mount namespace, so nothing on the host changes.  A
# machine where udev is installed but never ran has no /run/udev: then
# a private /run holds it.
if command -v udevadm >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 &&
	[ -d /etc/udev/rules.d ] && unshare -m true 2>/dev/null; then
	out=$(timeout 60 unshare -m sh -c '
		exec 2>&1
		mount -t tmpfs none /etc/udev/rules.d &&
		if [ -d /run/udev ]; then
			mount -t tmpfs none /run/udev
		else
			mount -t tmpfs none /run && mkdir /run/udev
		fi &&
		cp "$1" /etc/udev/rules.d/ &&
		udevadm test --action=add /sys/class/mem/null' sh "$rules") ||
		die "udevadm test failed: $out"
	grep -q "Reading rules file: /etc/udev/rules.d/60-blktap2.rules" \
		<<<"$out" || die "udevadm did not read the rules: $out"
	bad=$(grep -E "60-blktap2.rules:[0-9]+" <<<"$out" || true)
	[ -z "$bad" ] || die "udevadm complains about the rules: $bad"
else
	log "udevadm or unshare -m not available: rules syntax not checked"
fi

echo ok
