# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for the guest test scripts (busybox sh).  Source it first thing:
#
#   . /tests/lib.sh
#
# A script reports one or more results, each named:
#   pass NAME            VMTEST PASS NAME
#   fail NAME REASON     VMTEST FAIL NAME: REASON (the script goes on)
#   die REASON           fail the current $T (set T=name first), exit 1
#   skip_all REASON      every result of this script is skipped, exit 77
# and cleans up through an EXIT trap: taps made with tap_create are
# destroyed, mounts under /mnt unmounted, pids in $BG_PIDS killed.

VT_SCRIPT=${VMTEST_SCRIPT:-$(basename "$0" .sh)}
VT_REPORTED=/tmp/vmtest/$VT_SCRIPT.reported
T=$VT_SCRIPT
BG_PIDS=
VT_TAPS=
mkdir -p /tmp/vmtest

report() {	# report STATUS NAME [REASON]
	if [ -n "${3:-}" ]; then
		echo "VMTEST $1 $2: $3"
		echo "$1 $2: $3" >>"$VT_REPORTED"
	else
		echo "VMTEST $1 $2"
		echo "$1 $2" >>"$VT_REPORTED"
	fi
}

pass() {
	report PASS "$1"
}

fail() {
	report FAIL "$1" "$2"
}

die() {
	report FAIL "$T" "$*"
	exit 1
}

# hostcheck NAME KIND ARGS...: a check run-vm does on the host after the
# run (see run-vm); its result is the test's result.
hostcheck() {
	echo "VMTEST HOSTCHECK $*"
	echo "HOSTCHECK $*" >>"$VT_REPORTED"
}

skip_all() {
	report SKIP "$VT_SCRIPT" "$*"
	exit 77
}

log() {
	echo "--- [$(cut -d' ' -f1 /proc/uptime)] $T: $*"
}

# run CMD...: echo it, run it, die if it fails.
run() {
	echo "+ $*"
	"$@" || die "failed (exit $?): $*"
}

# must_fail CMD...: the command must fail; its stderr is kept in $ERR.
must_fail() {
	echo "+ $* (must fail)"
	if "$@" >/tmp/vmtest/out.$$ 2>/tmp/vmtest/err.$$; then
		cat /tmp/vmtest/out.$$ /tmp/vmtest/err.$$
		die "succeeded, but must fail: $*"
	fi
	ERR=$(cat /tmp/vmtest/err.$$)
	echo "    $ERR"
	rm -f /tmp/vmtest/out.$$ /tmp/vmtest/err.$$
}

# wait_until SECS CMD...: poll CMD every 0.2 s; false after SECS seconds.
wait_until() {
	local n=$(($1 * 5))
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.2
	done
}

# proc_gone PID: the process has exited (gone, or a zombie not yet reaped).
proc_gone() {
	[ ! -e "/proc/$1/stat" ] ||
		[ "$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)" = Z ]
}

# wait_pid PID SECS: wait for our child PID for at most SECS seconds;
# returns its exit status, or 124 (and kills it) when time is up.
wait_pid() {
	if ! wait_until "$2" proc_gone "$1"; then
		kill -KILL "$1" 2>/dev/null
		wait "$1" 2>/dev/null
		return 124
	fi
	wait "$1"
}

# dmesg_mark: remember where the kernel log is; dmesg_bad_since prints the
# BUG/WARNING/Oops/hung-task lines logged since then.
dmesg_mark() {
	DMESG_LINES=$(dmesg | wc -l)
}

dmesg_bad_since() {
	dmesg | tail -n +$((DMESG_LINES + 1)) | grep -E \
		'(^|[^A-Za-z_])BUG[: ]|WARNING:|Oops|hung task|blocked for more than|general protection fault|UBSAN:|Call Trace'
}

need_blktap() {
	[ -z "${VMTEST_NO_MODULE:-}" ] || skip_all "$VMTEST_NO_MODULE"
	[ -c /dev/xen/blktap-2/control ] ||
		die "blktap2 is loaded but /dev/xen/blktap-2/control does not exist"
}

# tap_create TAP-CTL-CREATE-ARGS...: sets TAP_DEV, TAP_MINOR, TAP_PID.
# With QUIET=1 it prints nothing when all goes well (loops).
tap_create() {
	local out
	[ "${QUIET:-0}" = 1 ] || echo "+ tap-ctl create $*"
	out=$(tap-ctl create "$@") || die "tap-ctl create $* failed"
	[ "${QUIET:-0}" = 1 ] || echo "    $out"
	case $out in
	/dev/xen/blktap-2/tapdev[0-9]*) ;;
	*) die "tap-ctl create printed '$out', not /dev/xen/blktap-2/tapdevN" ;;
	esac
	TAP_DEV=$out
	TAP_MINOR=${out#/dev/xen/blktap-2/tapdev}
	TAP_PID=$(tap_pid "$TAP_MINOR")
	[ -n "$TAP_PID" ] || die "tap-ctl list shows no tapdisk for minor $TAP_MINOR"
	[ -b "$TAP_DEV" ] || die "$TAP_DEV is not a block device"
	VT_TAPS="$VT_TAPS $TAP_PID:$TAP_MINOR"
}

# tap_pid MINOR: the pid of the tapdisk serving MINOR (tap-ctl list).
tap_pid() {
	tap-ctl list -m "$1" 2>/dev/null |
		sed -n "s/^pid=\([0-9]*\) minor=$1 .*/\1/p" | head -n 1
}

# tap_forget PID MINOR: no longer ours to clean up.
tap_forget() {
	VT_TAPS=$(echo "$VT_TAPS" | tr ' ' '\n' | grep -vx "$1:$2" | tr '\n' ' ')
}

# tap_destroy PID MINOR
tap_destroy() {
	if [ "${QUIET:-0}" = 1 ]; then
		tap-ctl destroy -p "$1" -m "$2" ||
			die "failed: tap-ctl destroy -p $1 -m $2"
	else
		run tap-ctl destroy -p "$1" -m "$2"
	fi
	tap_forget "$1" "$2"
	[ ! -e "/dev/xen/blktap-2/tapdev$2" ] ||
		wait_until 5 test ! -e "/dev/xen/blktap-2/tapdev$2" ||
		die "/dev/xen/blktap-2/tapdev$2 still exists after destroy"
}

# stat_get PID MINOR KEY: one number from 'tap-ctl stats', KEY a dotted
# path into its JSON such as requests.write or inflight_max.
stat_get() {
	tap-ctl stats -p "$1" -m "$2" | awk -v want="$3" '
		# One key per line (json-c pretty output): keep the path of
		# enclosing objects; arrays are not followed.
		{
			line = $0
			gsub(/^[ \t]+|[ \t,]+$/, "", line)
		}
		line ~ /^"[^"]*": *\{$/ {
			k = line; sub(/^"/, "", k); sub(/".*/, "", k)
			path[++depth] = k; next
		}
		line ~ /^\}/ { if (depth > 0) depth--; next }
		line ~ /^"[^"]*": *-?[0-9]+$/ {
			k = line; sub(/^"/, "", k); sub(/".*/, "", k)
			v = line; sub(/.*: */, "", v)
			p = ""
			for (i = 1; i <= depth; i++) p = p path[i] "."
			if (p k == want) { print v; found = 1; exit }
		}
		END { if (!found) exit 1 }'
}

# mk_tree DIR N: N files of 1 KiB to 256 KiB of random data in nested
# directories, plus an empty file, a sparse file and a symlink.
mk_tree() {
	local d=$1 n=$2 i sub
	mkdir -p "$d"
	i=1
	while [ $i -le "$n" ]; do
		sub=$d/dir$((i % 7))/sub$((i % 3))
		mkdir -p "$sub"
		dd if=/dev/urandom of="$sub/file$i" bs=1024 \
			count=$(((i * 7919) % 256 + 1)) 2>/dev/null ||
			die "cannot write $sub/file$i"
		i=$((i + 1))
	done
	: >"$d/empty"
	dd if=/dev/urandom of="$d/sparse" bs=4096 seek=1000 count=1 2>/dev/null
	ln -s dir1/sub1/file1 "$d/link"
}

# tree_sums DIR: a checksum line per file, in a stable order.
tree_sums() {
	(cd "$1" && find . -type f | sort | xargs sha256sum
	 find . -type l | sort | while read -r l; do
		echo "link $l -> $(readlink "$l")"
	 done)
}

vt_cleanup() {
	local m t
	for p in $BG_PIDS; do
		kill -KILL "$p" 2>/dev/null
	done
	for m in $(grep ' /mnt/' /proc/mounts | cut -d' ' -f2 | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	for t in $VT_TAPS; do
		echo "cleanup: tap-ctl destroy -p ${t%:*} -m ${t#*:}"
		tap-ctl destroy -p "${t%:*}" -m "${t#*:}"
	done
}
trap vt_cleanup EXIT
