#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/xmsnap on a Xen guest's disks (DOMAIN VDEV, -a, -D), with a
# stand-in for xmsnap-xen (the real one needs xenstore; tests/xen runs it
# for real): it maps the guest's vdevs to td-rig disks and logs every call.
# Two disks (a VHD and a qcow) under I/O:
#   - DOMAIN VDEV snapshots that disk only;
#   - -D -a: the domain is paused, then both disks, both get their new
#     leaves (one timestamp), both resume, then the domain: in that order;
#   - -D -a with the second disk's snapshot failing (a full disk, as root):
#     both disks back on their old leaves, no new leaf left, the domain
#     unpaused, one line, exit 1;
#   - the domain cannot be paused: nothing else happens;
#   - a vdev that is not a tapdev, an unknown domain: refused.
# At the end both disks hold exactly td-rig's models.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

QCOW_CREATE=${QCOW_CREATE:-$BINDIR/qcow-create}
QCOW2RAW=${QCOW2RAW:-$BINDIR/qcow2raw}
need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$VHD_UTIL" "$QCOW_CREATE" "$QCOW2RAW"
export QCOW_CREATE
XMSNAP=$SRCDIR/scripts/xmsnap
cd "$TMPDIR"
td_cleanup --control-dir TD_PID RIG1 RIG2
MB=32

# The stand-in: "disks DOM", "disk DOM VDEV", "pause DOM", "unpause DOM"
# for the domain named in $TMPDIR/xen/domain, its disks in xen/disks.
mkdir xen
echo guest1 >xen/domain
cat >xen/xmsnap-xen <<EOF
#!/bin/sh
d=$TMPDIR/xen
echo "\$*" >>\$d/calls
[ "\$2" = "\$(cat \$d/domain)" ] || { echo "xmsnap-xen: no domain \$2" >&2; exit 1; }
case \$1 in
disks) cat \$d/disks ;;
disk) awk -v v="\$3" '\$1 == v { print \$2; f = 1 } END { exit !f }' \$d/disks ||
	{ echo "xmsnap-xen: \$2 has no disk \$3" >&2; exit 1; } ;;
pause|unpause) [ ! -e \$d/no-\$1 ] || { echo "xmsnap-xen: cannot \$1 \$2" >&2; exit 1; } ;;
esac
EOF
chmod +x xen/xmsnap-xen
export XMSNAP_XEN=$TMPDIR/xen/xmsnap-xen
printf '%s\n' "xvda /dev/xen/blktap-2/tapdev11" "xvdb /dev/xen/blktap-2/tapdev12" >xen/disks

run "$VHD_UTIL" create -n a.vhd -s $MB
run "$QCOW_CREATE" $MB b.qcow
td_start
P1=$TD_PID
td_start
P2=$TD_PID
TD_PID="$P1 $P2"
"$TD_RIG" run -p "$P1" -m 11 -a "vhd:$TMPDIR/a.vhd" -d 16 --bs 512-64k \
	--rw randrw --stop-on-signal --seed 71 --model a.model >rig1.out 2>&1 &
RIG1=$!
"$TD_RIG" run -p "$P2" -m 12 -a "qcow:$TMPDIR/b.qcow" -d 16 --bs 512-64k \
	--rw randrw --stop-on-signal --seed 72 --model b.model >rig2.out 2>&1 &
RIG2=$!
for m in 11 12; do
	for _ in $(seq 1 300); do
		"$TAP_CTL" list -m $m | grep -q "state=0x3 " && break
		sleep 0.1
	done
done

leaf() {	# leaf MINOR: TYPE:PATH it runs on (and it runs)
	local line
	line=$("$TAP_CTL" list -m "$1")
	assert_match "^pid=[0-9]+ minor=$1 state=0x3 args=" "$line" "minor $1"
	echo "${line#* args=}"
}

log "DOMAIN VDEV: that disk only"
: >xen/calls
new=$("$XMSNAP" guest1 xvdb) || die "xmsnap guest1 xvdb failed"
assert_eq "qcow:$new" "$(leaf 12)" "xvdb's leaf"
assert_eq "vhd:$TMPDIR/a.vhd" "$(leaf 11)" "xvda's leaf"
assert_eq "disk guest1 xvdb" "$(cat xen/calls)" "xmsnap-xen calls"
B=$new
sleep 1

log "-D -a: domain, disks, snapshots, disks, domain"
: >xen/calls
out=$("$XMSNAP" -v -D -a guest1 2>xm.err) || { cat xm.err; die "xmsnap -D -a failed"; }
cat xm.err
mapfile -t news <<<"$out"
assert_eq 2 "${#news[@]}" "new leaves printed"
assert_eq "vhd:${news[0]}" "$(leaf 11)" "xvda's leaf"
assert_eq "qcow:${news[1]}" "$(leaf 12)" "xvdb's leaf"
assert_eq "${news[0]##*.snap-}" "${news[1]##*.snap-}" "one timestamp"
assert_eq "$TMPDIR/a.vhd" "$("$VHD_UTIL" query -n "${news[0]}" -p)" "parent"
order=$(grep -oE '^xmsnap: \+ [^ ]+ (pause|unpause|snapshot|[0-9]+ )' xm.err |
	sed -E 's/^xmsnap: \+ //; s/^[^ ]*xmsnap-xen /xen-/; s/^[^ ]*tap-ctl /tap-/;
	     s/^[^ ]*vhd-util /vhd-/; s/^[^ ]*qcow-create [0-9]+ $/qcow-create/' |
	tr '\n' ' ')
assert_eq "xen-pause tap-pause tap-pause vhd-snapshot qcow-create tap-unpause tap-unpause xen-unpause " \
	"$order" "order of the steps"
assert_eq "disks guest1"$'\n'"pause guest1"$'\n'"unpause guest1" "$(cat xen/calls)" \
	"xmsnap-xen calls"
A=${news[0]}
B=${news[1]}

log "-D -a, the second disk's snapshot fails and leaves half a file"
# A qcow-create that dies half-way, its file left behind (as a crash or
# a kill would leave it).
cat >xen/qcow-half <<'EOF2'
#!/bin/sh
printf 'QFI\373half' >"$2"
echo "qcow-create: $2: write: No space left on device" >&2
exit 28
EOF2
chmod +x xen/qcow-half
: >xen/calls
before=$(ls -A | grep -v -e '^tapdisk\.' -e '^stderr\.' | sort)
pauses1=$(grep -c "pausing with" "tapdisk.$P1.log")
expect_fail env QCOW_CREATE="$TMPDIR/xen/qcow-half" "$XMSNAP" -D -a guest1
assert_match "^xmsnap: snapshot of $B failed: qcow-create: .*No space left on device; minor 11 runs on vhd:$A again; minor 12 runs on qcow:$B again; domain guest1 unpaused$" \
	"$FAIL_MSG"
assert_eq "vhd:$A" "$(leaf 11)" "xvda's leaf"
assert_eq "qcow:$B" "$(leaf 12)" "xvdb's leaf"
assert_eq $((pauses1 + 1)) "$(grep -c "pausing with" "tapdisk.$P1.log")" "xvda paused"
assert_eq "$before" "$(ls -A | grep -v -e '^tapdisk\.' -e '^stderr\.' | sort)" \
	"files (the new leaves removed)"
assert_eq "disks guest1"$'\n'"pause guest1"$'\n'"unpause guest1" "$(cat xen/calls)" \
	"xmsnap-xen calls"

log "the domain cannot be paused: nothing else happens"
touch xen/no-pause
: >xen/calls
pauses1=$(grep -c "pausing with" "tapdisk.$P1.log")
fails_with 1 "^xmsnap: cannot pause domain guest1: xmsnap-xen: cannot pause guest1$" \
	"$XMSNAP" -D guest1 xvda
rm xen/no-pause
assert_eq "$pauses1" "$(grep -c "pausing with" "tapdisk.$P1.log")" "xvda not paused"
assert_eq "$before" "$(ls -A | grep -v -e '^tapdisk\.' -e '^stderr\.' | sort)" "files"

log "refused: a vdev that is no tapdev, an unknown vdev or domain"
printf '%s\n' "xvda /dev/xen/blktap-2/tapdev11" "xvdc /dev/sdc" >xen/disks
fails_with 1 "^xmsnap: disk xvdc of domain guest1 is /dev/sdc, not a tapdev$" \
	"$XMSNAP" -a guest1
fails_with 1 "^xmsnap: cannot find disk xvdz of domain guest1: xmsnap-xen: guest1 has no disk xvdz$" \
	"$XMSNAP" guest1 xvdz
fails_with 1 "^xmsnap: cannot list the disks of domain guest2: xmsnap-xen: no domain guest2$" \
	"$XMSNAP" -a guest2
assert_eq "$before" "$(ls -A | grep -v -e '^tapdisk\.' -e '^stderr\.' | sort)" "files"

log "both disks hold their models"
for r in RIG1 RIG2; do
	kill -TERM "${!r}"
	wait_child "${!r}" 60 || die "td-rig did not stop"
	[ "$CHILD_RC" -eq 0 ] || die "td-rig exited with status $CHILD_RC"
	declare "$r="
done
cat rig1.out rig2.out
assert_match " errors=0 " "$(cat rig1.out)" "requests failed"
assert_match " errors=0 " "$(cat rig2.out)" "requests failed"
"$VHD_UTIL" read -n "$A" -r 0 -c $((MB * 2048)) >a.raw || die "vhd-util read"
run "$TD_RIG" verify --model a.model --image a.raw
run "$QCOW2RAW" b.raw "$B"
run "$TD_RIG" verify --model b.model --image b.raw
td_stop "$P1"
td_stop "$P2"
TD_PID=
echo ok
