#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/xmsnap under load, through td-rig's user-space ring.  For a VHD
# and for a qcow disk, td-rig keeps reads and writes in flight while xmsnap
# snapshots the disk several times, named by minor, by tapdev path and by
# image path, with the default name and with a given one, run by dash, bash
# and busybox sh.  Each time the disk runs on the new leaf and the old leaf
# is its parent; three snapshots within one second get three names.  Then
# the lifecycle of the README: back up the read-only parent, pause,
# coalesce the leaf into its parent, unpause onto the parent.  No request
# fails, every read is checked as it completes, and at the end the image
# holds exactly td-rig's model.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

QCOW_CREATE=${QCOW_CREATE:-$BINDIR/qcow-create}
QCOW2RAW=${QCOW2RAW:-$BINDIR/qcow2raw}
need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL" "$QCOW_CREATE" "$QCOW2RAW"
export QCOW_CREATE
XMSNAP=$SRCDIR/scripts/xmsnap
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID

MB=64
SECTORS=$((MB * 2048))
MINOR=3
TAPDEV=/dev/xen/blktap-2/tapdev$MINOR

# The shells xmsnap runs under: its own #!/bin/sh, bash, busybox sh.
SHELLS=(env bash)
command -v busybox >/dev/null 2>&1 && SHELLS+=("busybox sh")

# leaf_now: TYPE:PATH the disk runs on (tap-ctl list), checking it runs.
leaf_now() {
	local line
	line=$("$TAP_CTL" list -m $MINOR)
	assert_match "^pid=$TD_PID minor=$MINOR state=0x3 args=" "$line" "disk state"
	echo "${line#* args=}"
}

# snap SHELL TARGET [NAME]: run xmsnap; it must print one line, the new
# leaf, which the disk then runs on, over the old leaf.
snap() {
	local sh=$1 old new
	shift
	old=$(leaf_now)
	echo "+ $sh xmsnap $*"
	# shellcheck disable=SC2086
	new=$($sh "$XMSNAP" "$@") || die "xmsnap $* failed"
	echo "    $new"
	[ "$(printf '%s\n' "$new" | wc -l)" = 1 ] || die "xmsnap printed more than one line"
	[ -f "$new" ] || die "xmsnap printed '$new', which is no file"
	assert_eq "${old%%:*}:$new" "$(leaf_now)" "the disk's leaf after xmsnap"
	if [ "${old%%:*}" = vhd ]; then
		assert_eq "${old#*:}" "$("$VHD_UTIL" query -n "$new" -p)" "parent of $new"
	fi
	LEAF=$new
	wait_writes 100
}

# every_snapshot TYPE: snapshots by each kind of target, each shell.
every_snapshot() {
	local k=0 sh
	for sh in "${SHELLS[@]}"; do
		k=$((k + 1))
		log "$1, $sh: by minor, by tapdev path, by image path, named"
		snap "$sh" $MINOR
		snap "$sh" $TAPDEV
		snap "$sh" "$LEAF"
		snap "$sh" "$(leaf_now | cut -d: -f2-)" "named $k.$1"
		assert_eq "$TMPDIR/named $k.$1" "$LEAF" "the given name"
	done
	log "$1: three snapshots at once get three names"
	local a b c
	a=$("$XMSNAP" $MINOR) && b=$("$XMSNAP" $MINOR) && c=$("$XMSNAP" $MINOR) ||
		die "xmsnap failed"
	echo "    $a"$'\n'"    $b"$'\n'"    $c"
	[ "$a" != "$b" ] && [ "$b" != "$c" ] && [ "$a" != "$c" ] ||
		die "names collide"
	assert_match "^$TMPDIR/named $k\.$1\.snap-[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?$" "$c" \
		"default name (a given name keeps its .snap- suffixes from growing)"
	LEAF=$c
	assert_eq "$1:$c" "$(leaf_now)" "the disk's leaf"
	wait_writes 100
}

log "VHD"
run "$VHD_UTIL" create -n disk.vhd -s $MB
LEAF=$TMPDIR/disk.vhd
rig_load_start 47 vhd disk.vhd
every_snapshot vhd
depth=$("$VHD_UTIL" query -n "$LEAF" -d)
n=$((4 * ${#SHELLS[@]} + 3 + 1))
assert_eq "chain depth: $n" "$depth" "depth of the chain"

log "the lifecycle: back up the read-only parent, coalesce the leaf into it"
parent=$("$VHD_UTIL" query -n "$LEAF" -p)
run "$VHD_UTIL" check -n "$parent" -p
run cp --sparse=always "$parent" backup.vhd
run "$TAP_CTL" pause -p "$TD_PID" -m $MINOR
run "$VHD_UTIL" coalesce -n "$LEAF"
run "$TAP_CTL" unpause -p "$TD_PID" -m $MINOR -a "vhd:$parent"
run rm -- "$LEAF"
assert_eq "vhd:$parent" "$(leaf_now)" "leaf after the coalesce"
wait_writes 200
LEAF=$parent
rig_load_stop
run "$VHD_UTIL" check -n "$LEAF" -p
"$VHD_UTIL" read -n "$LEAF" -r 0 -c $SECTORS >chain.raw || die "vhd-util read failed"
run "$TD_RIG" verify --model vhd.model --image chain.raw
# The backup is the parent at the time of the last snapshot: a valid
# image of the same chain.
run "$VHD_UTIL" check -n backup.vhd -p

log "qcow"
run "$QCOW_CREATE" $MB disk.qcow
LEAF=$TMPDIR/disk.qcow
rig_load_start 47 qcow disk.qcow
every_snapshot qcow
rig_load_stop
run "$QCOW2RAW" flat.raw "$LEAF"
run "$TD_RIG" verify --model qcow.model --image flat.raw
echo ok
