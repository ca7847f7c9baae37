#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/xmsnap when a step fails, under td-rig's I/O: the disk must end
# up running on its old leaf, no new leaf may be left behind, the failure
# is one line and the exit status 1; afterwards the disk keeps working
# (more writes, every read checked) and at the end holds exactly td-rig's
# model.
#   - the snapshot's directory is read-only: refused before pausing;
#   - the disk is full: the snapshot step fails (ENOSPC), undone, for a
#     VHD and for a qcow disk;
#   - the leaf removed before xmsnap runs (tapdisk still has it open):
#     refused before pausing;
#   - the leaf removed during the pause (by a vhd-util wrapper, as another
#     tool might): the snapshot step fails; xmsnap puts the leaf back from
#     the hard link it made before pausing and unpauses onto it;
#   - the new leaf is refused by tapdisk (a wrapper makes it the wrong
#     size): the child is removed, the disk unpaused onto the old leaf;
#   - SIGTERM while the snapshot is being made: undone the same way.
# As root the read-only directory and the full disk are mounts (a
# read-only bind mount, a tiny tmpfs) in a private mount namespace
# (unshare -m), so nothing outlives the test; otherwise the directory is
# chmod 555 and the full disk is skipped.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

QCOW_CREATE=${QCOW_CREATE:-$BINDIR/qcow-create}
QCOW2RAW=${QCOW2RAW:-$BINDIR/qcow2raw}
need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL" "$QCOW_CREATE" "$QCOW2RAW"
export QCOW_CREATE
XMSNAP=$SRCDIR/scripts/xmsnap
cd "$TMPDIR"
td_cleanup TD_PID RIG_PID XM_PID
MB=32
SECTORS=$((MB * 2048))
MINOR=1

ROOT_NS=0
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	ROOT_NS=1
fi

pauses() {
	grep -c "pausing with" "$TMPDIR/tapdisk.$TD_PID.log" || true
}

# images: the image files in the directory (what xmsnap may leave).
images() {
	ls -A "$TMPDIR" | grep -E '\.(vhd|qcow)' | sort
}

# still_on LEAF PAUSED_BEFORE EXPECT_PAUSED: after a failure, the disk runs
# on LEAF, it was paused (1) or not (0) by xmsnap, nothing but the images
# of $IMAGES is left, and the disk keeps taking writes.
still_on() {
	assert_match "^pid=$TD_PID minor=$MINOR state=0x3 args=$1$" \
		"$("$TAP_CTL" list -m $MINOR)" "the disk after the failure"
	assert_eq $(($2 + $3)) "$(pauses)" "pauses"
	assert_eq "$IMAGES" "$(images)" "image files"
	wait_writes 100
}

# ---- VHD ----
run "$VHD_UTIL" create -n disk.vhd -s $MB
rig_load_start 61 vhd disk.vhd
LEAF=$TMPDIR/disk.vhd
IMAGES=$(images)

log "read-only directory: refused before pausing"
mkdir ro
if [ $ROOT_NS = 1 ]; then
	# A read-only bind mount of ro onto itself, in a private namespace.
	expect_fail unshare -m sh -c 'mount --bind "$1" "$1" &&
		mount -o remount,bind,ro "$1" && shift && exec "$@"' sh \
		"$TMPDIR/ro" "$XMSNAP" $MINOR "$TMPDIR/ro/child.vhd"
elif [ "$(id -u)" = 0 ]; then
	skip "root without unshare -m: no way to make a read-only directory"
else
	chmod 555 ro
	expect_fail "$XMSNAP" $MINOR "$TMPDIR/ro/child.vhd"
	chmod 755 ro
fi
assert_match "^xmsnap: cannot create $TMPDIR/ro/child.vhd: Read-only file system; nothing was paused$|Permission denied; nothing was paused$" \
	"$FAIL_MSG"
[ -z "$(ls -A ro)" ] || die "files left in ro: $(ls -A ro)"
p0=$(pauses)
still_on "vhd:$LEAF" "$p0" 0

# full_disk CMD...: run CMD with a full 64 KiB tmpfs mounted on $TMPDIR/full
# (root: a private mount namespace).
full_disk() {
	unshare -m sh -c 'mount -t tmpfs -o size=64k,mode=755 tmpfs "$1" &&
		{ dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null; true; } &&
		shift && exec "$@"' sh "$TMPDIR/full" "$@"
}

mkdir full
if [ $ROOT_NS = 1 ]; then
	log "disk full: the snapshot step fails and is undone"
	expect_fail full_disk "$XMSNAP" $MINOR "$TMPDIR/full/child.vhd"
	assert_match "^xmsnap: snapshot of $LEAF failed: .*No space left on device.*; minor $MINOR runs on vhd:$LEAF again$" \
		"$FAIL_MSG"
	still_on "vhd:$LEAF" "$p0" 1
	p0=$(pauses)
	[ -z "$(ls -A full)" ] || die "files left in full: $(ls -A full)"
else
	log "disk full: skipped (needs root for a tmpfs in a mount namespace)"
fi

log "leaf removed before xmsnap: refused before pausing"
run mv disk.vhd moved.vhd
expect_fail "$XMSNAP" $MINOR
assert_match "^xmsnap: $LEAF \(the leaf of minor $MINOR\) no longer exists; not pausing minor $MINOR$" \
	"$FAIL_MSG"
assert_eq "$p0" "$(pauses)" "pauses"
run mv moved.vhd disk.vhd
still_on "vhd:$LEAF" "$p0" 0

# wrapper NAME BODY: a vhd-util stand-in in $TMPDIR/bin that runs BODY
# for "snapshot" and the real vhd-util for everything else.
wrapper() {
	mkdir -p bin
	cat >"bin/$1" <<EOF
#!/bin/sh
if [ "\$1" = snapshot ]; then
$2
fi
exec "$VHD_UTIL" "\$@"
EOF
	chmod +x "bin/$1"
}

log "leaf removed during the pause: the snapshot fails, the leaf is put back"
wrapper rm-leaf "rm -f -- '$LEAF'"
expect_fail env VHD_UTIL="$TMPDIR/bin/rm-leaf" "$XMSNAP" $MINOR
assert_match "^xmsnap: snapshot of $LEAF failed: .*; $LEAF had been removed; restored it; minor $MINOR runs on vhd:$LEAF again$" \
	"$FAIL_MSG"
still_on "vhd:$LEAF" "$p0" 1
p0=$(pauses)

log "tapdisk refuses the new leaf: back onto the old one"
# -n NEW is the snapshot's second and third argument.
wrapper wrong-size "exec \"$VHD_UTIL\" create -n \"\$3\" -s $((MB * 2))"
expect_fail env VHD_UTIL="$TMPDIR/bin/wrong-size" "$XMSNAP" $MINOR
assert_match "^xmsnap: unpause of minor $MINOR onto vhd:.*failed: .*refusing to change its size; minor $MINOR runs on vhd:$LEAF again$" \
	"$FAIL_MSG"
still_on "vhd:$LEAF" "$p0" 1
p0=$(pauses)

log "SIGTERM while the snapshot is made: undone"
wrapper slow "touch '$TMPDIR/in-snapshot'; sleep 2"
rm -f in-snapshot
env VHD_UTIL="$TMPDIR/bin/slow" "$XMSNAP" $MINOR >xm.out 2>xm.err &
XM_PID=$!
for _ in $(seq 1 100); do
	[ -e in-snapshot ] && break
	sleep 0.1
done
[ -e in-snapshot ] || die "xmsnap never got to the snapshot"
kill -TERM "$XM_PID"
wait_child "$XM_PID" 30 || die "xmsnap did not exit after SIGTERM"
XM_PID=
cat xm.err
assert_eq 1 "$CHILD_RC" "exit status after SIGTERM"
assert_eq 1 "$(wc -l <xm.err)" "lines on stderr"
assert_match "^xmsnap: interrupted by SIGTERM; minor $MINOR runs on vhd:$LEAF again$" \
	"$(cat xm.err)"
[ ! -s xm.out ] || die "xmsnap printed a new leaf: $(cat xm.out)"
still_on "vhd:$LEAF" "$p0" 1
rm -f in-snapshot xm.out xm.err

log "after all that, a snapshot works"
new=$("$XMSNAP" $MINOR) || die "xmsnap failed"
assert_match "args=vhd:$new$" "$("$TAP_CTL" list -m $MINOR)"
wait_writes 100
rig_load_stop
run "$VHD_UTIL" check -n "$new" -p
"$VHD_UTIL" read -n "$new" -r 0 -c $SECTORS >chain.raw || die "vhd-util read failed"
run "$TD_RIG" verify --model vhd.model --image chain.raw

# ---- qcow ----
run "$QCOW_CREATE" $MB disk.qcow
rig_load_start 61 qcow disk.qcow
LEAF=$TMPDIR/disk.qcow
IMAGES=$(images)
if [ $ROOT_NS = 1 ]; then
	log "qcow, disk full: the snapshot step fails and is undone"
	expect_fail full_disk "$XMSNAP" $MINOR "$TMPDIR/full/child.qcow"
	assert_match "^xmsnap: snapshot of $LEAF failed: .*; minor $MINOR runs on qcow:$LEAF again$" \
		"$FAIL_MSG"
	still_on "qcow:$LEAF" 0 1
	[ -z "$(ls -A full)" ] || die "files left in full: $(ls -A full)"
fi
log "qcow, leaf removed before xmsnap: refused before pausing"
p0=$(pauses)
run mv disk.qcow moved.qcow
expect_fail "$XMSNAP" $MINOR
assert_match "no longer exists; not pausing minor $MINOR$" "$FAIL_MSG"
run mv moved.qcow disk.qcow
still_on "qcow:$LEAF" "$p0" 0
rig_load_stop
run "$QCOW2RAW" flat.raw "$LEAF"
run "$TD_RIG" verify --model qcow.model --image flat.raw
echo ok
