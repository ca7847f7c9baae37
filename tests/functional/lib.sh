# shellcheck shell=bash
# Helpers for functional tests.  Source it first thing:
#
#   . "$(dirname "$0")/lib.sh"
#
# It turns on `set -euo pipefail`.  tests/run-tests exports VHD_UTIL,
# BINDIR, TOOLSDIR, SRCDIR and a fresh TMPDIR (also the cwd); when a test
# is run by hand they default to build/default and a temporary directory.
# Exit 77 (see skip) marks a test as skipped.
#
# lib.sh owns the EXIT trap: a test must not set its own, but names the
# processes to kill with td_cleanup.  At exit, the trap kills those, prints
# the end of every $TMPDIR/tapdisk.*.log when the test failed, and removes
# the temporary directory if lib.sh made it.

set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BINDIR=${BINDIR:-$SRCDIR/build/default}
VHD_UTIL=${VHD_UTIL:-$BINDIR/vhd-util}
TOOLSDIR=${TOOLSDIR:-$BINDIR/tests/tools}
TAPDISK=${TAPDISK:-$BINDIR/tapdisk}
TAP_CTL=${TAP_CTL:-$BINDIR/tap-ctl}
TD_RIG=${TD_RIG:-$BINDIR/tests/td-rig}
# The directory lib.sh made, when run by hand: removed at exit.
LIB_TMPDIR=
if [ -z "${TMPDIR:-}" ] || [ "$TMPDIR" = /tmp ]; then
	TMPDIR=$(mktemp -d)
	LIB_TMPDIR=$TMPDIR
fi
export SRCDIR BINDIR VHD_UTIL TOOLSDIR TAPDISK TAP_CTL TD_RIG TMPDIR
# tapdisk's control sockets stay inside the test's directory.
BLKTAP_CONTROL_DIR=${BLKTAP_CONTROL_DIR:-$TMPDIR/control}
export BLKTAP_CONTROL_DIR
# Set by td_cleanup: variables holding the pids to kill at exit, and
# whether to look for tapdisks in the control directory too.
CLEANUP_VARS=()
CLEANUP_CONTROL_DIR=0

# The EXIT trap (see the top).  No set -e here: every step must run.
lib_exit() {
	local rc=$? name p f
	set +e
	[ "$CLEANUP_CONTROL_DIR" = 1 ] && kill_control_dir_tapdisks
	for name in "${CLEANUP_VARS[@]}"; do
		[ -v "$name" ] || continue
		local -n pids=$name
		for p in "${pids[@]}"; do
			[ -n "$p" ] && kill -9 "$p" 2>/dev/null
		done
		unset -n pids
	done
	if [ $rc -ne 0 ]; then
		for f in "$TMPDIR"/tapdisk.*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 30 lines)"
			tail -n 30 "$f"
		done
	fi
	[ -n "$LIB_TMPDIR" ] && rm -rf "$LIB_TMPDIR"
	exit $rc
}
trap lib_exit EXIT

# die MSG...: fail the test with a message naming the caller's line.
die() {
	echo "FAILED (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}): $*" >&2
	exit 1
}

# skip REASON...: mark the test skipped.
skip() {
	echo "skipped: $*"
	exit 77
}

# need_cmd CMD...: skip unless every command exists.
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c not found"
	done
}

# need_built FILE...: fail (not skip: the build is broken) unless every
# FILE is an executable.
need_built() {
	local f
	for f in "$@"; do
		[ -x "$f" ] || die "not built: $f"
	done
}

# log MSG...: a progress line in the test's log.
log() {
	echo "--- $*"
}

# run CMD...: echo the command, then run it (fails the test if it fails).
run() {
	echo "+ $*"
	"$@"
}

# expect_fail CMD...: the command must exit non-zero (but not by a signal,
# a timeout or a sanitizer abort) and print exactly one non-empty line on
# stderr, which is printed and left in $FAIL_MSG.  Stdout is discarded.
expect_fail() {
	local err rc=0
	err=$(mktemp "$TMPDIR/stderr.XXXXXX")
	echo "+ $* (must fail)"
	"$@" >/dev/null 2>"$err" || rc=$?
	local -a lines
	mapfile -t lines <"$err"
	rm -f "$err"
	if [ $rc -eq 0 ]; then
		die "expected failure, but exit status 0: $*"
	fi
	if [ $rc -ge 124 ]; then
		printf '    %s\n' "${lines[@]}" >&2
		die "exit status $rc (crash, signal or timeout): $*"
	fi
	if [ ${#lines[@]} -ne 1 ] || [ -z "${lines[0]//[[:space:]]/}" ]; then
		echo "    stderr was (${#lines[@]} lines):" >&2
		printf '    | %s\n' "${lines[@]}" >&2
		die "expected exactly one non-empty line on stderr: $*"
	fi
	FAIL_MSG=${lines[0]}
	echo "    error: $FAIL_MSG"
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
	[ $# -ge 2 ] || die "assert_eq needs two arguments"
	if [ "$1" != "$2" ]; then
		echo "FAILED (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}):" \
			"${3:-values differ}: expected '$1', got '$2'" >&2
		exit 1
	fi
}

# assert_match REGEX STRING [WHAT]: bash extended regex match.
assert_match() {
	if ! [[ $2 =~ $1 ]]; then
		echo "FAILED (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}):" \
			"${3:-no match}: '$2' does not match /$1/" >&2
		exit 1
	fi
}

# mkrandom FILE SIZE_BYTES [SEED]: deterministic pseudo-random data (the
# same FILE contents for the same SIZE and SEED), from AES-CTR over zeros.
# Falls back to /dev/urandom (not deterministic) without openssl.
mkrandom() {
	local file=$1 size=$2 seed=${3:-vhd-functional-tests} key
	if command -v openssl >/dev/null 2>&1; then
		key=$(printf '%s' "$seed" | sha256sum | cut -c1-32)
		head -c "$size" /dev/zero |
			openssl enc -aes-128-ctr -nosalt -K "$key" \
				-iv 00000000000000000000000000000000 >"$file"
	else
		head -c "$size" /dev/urandom >"$file"
	fi
	local got
	got=$(stat -c %s "$file")
	[ "$got" -eq "$size" ] || die "mkrandom $file: $got bytes, wanted $size"
}

# cmp_files A B: the files must be identical.
cmp_files() {
	local out
	if ! out=$(cmp -- "$1" "$2" 2>&1); then
		echo "FAILED (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}):" \
			"files differ: $out" >&2
		exit 1
	fi
}

# file_size FILE: size in bytes.
file_size() {
	stat -c %s "$1"
}

# exit_status CMD...: print the exit status of CMD, its output discarded.
exit_status() {
	local rc=0
	"$@" >/dev/null 2>&1 || rc=$?
	echo "$rc"
}

# fails_with STATUS REGEX CMD...: one line matching REGEX, exit STATUS.
fails_with() {
	local want=$1 re=$2 rc
	shift 2
	expect_fail "$@"
	assert_match "$re" "$FAIL_MSG"
	rc=$(exit_status "$@")
	assert_eq "$want" "$rc" "exit status of: $*"
}

# wait_child PID SECONDS: wait for PID, a child of this shell, to exit
# (SECONDS at most) and set CHILD_RC to its exit status.  Returns 1, the
# process still running, when it did not exit in time.
wait_child() {
	local pid=$1 i
	for i in $(seq 1 $(($2 * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		return 1
	fi
	CHILD_RC=0
	wait "$pid" || CHILD_RC=$?
}

# wait_gone PID: a process that is not our child exits (30 s at most).
wait_gone() {
	local i
	for i in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	die "process $1 did not exit"
}

# td_cleanup [--control-dir] VAR...: at exit (see the top), kill -9 every
# pid held then in the variables or arrays named VAR (those not yet set
# start empty).  The test sets them as it starts processes and clears them
# as it reaps them, so that only its own processes are killed.  With
# --control-dir, also every tapdisk serving this test's private control
# directory: a daemon whose pid a failed step never got back (see
# kill_control_dir_tapdisks).
td_cleanup() {
	local v
	if [ "${1:-}" = --control-dir ]; then
		CLEANUP_CONTROL_DIR=1
		shift
	fi
	for v in "$@"; do
		declare -p "$v" >/dev/null 2>&1 || declare -g "$v="
	done
	CLEANUP_VARS=("$@")
}

# kill_control_dir_tapdisks: kill -9 the tapdisks with a socket in
# $BLKTAP_CONTROL_DIR whose environment names that directory: only the
# test's own (the directory is private), nothing it did not start.
kill_control_dir_tapdisks() {
	local s p
	for s in "$BLKTAP_CONTROL_DIR"/ctl*; do
		[ -S "$s" ] || continue
		p=${s##*/ctl}
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
			grep -qxF "BLKTAP_CONTROL_DIR=$BLKTAP_CONTROL_DIR" &&
			kill -9 "$p" 2>/dev/null || true
	done
}

# td_start [ENV=VALUE...]: start a tapdisk in the foreground (-F), in the
# background, logging to $TMPDIR/tapdisk.<pid>.log; wait until its control
# socket is in place (tapdisk renames it there once listening) and set
# TD_PID.  (Not "pid=$(td_start)": it must be this shell's child, so that
# td_stop can collect its exit status, which is how valgrind and the
# sanitizers report.)
td_start() {
	local pid i
	# The subshell's pid becomes tapdisk's through exec, so the log
	# name is known before tapdisk runs.
	(exec env "$@" "$TAPDISK" -F >"$TMPDIR/tapdisk.$BASHPID.log" 2>&1) &
	pid=$!
	for i in $(seq 1 300); do
		# tapdisk renames its socket into place once it listens.
		[ -S "$BLKTAP_CONTROL_DIR/ctl$pid" ] &&
			{ TD_PID=$pid; return 0; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	cat "$TMPDIR/tapdisk.$pid.log" >&2
	die "tapdisk $pid did not come up"
}

# td_stop PID: SIGTERM, wait (60 s at most), and fail unless it exited 0.
td_stop() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_child "$pid" 60; then
		kill -KILL "$pid" 2>/dev/null || true
		cat "$TMPDIR/tapdisk.$pid.log" >&2 || true
		die "tapdisk $pid did not exit on SIGTERM"
	fi
	if [ "$CHILD_RC" -ne 0 ]; then
		cat "$TMPDIR/tapdisk.$pid.log" >&2 || true
		die "tapdisk $pid exited with status $CHILD_RC"
	fi
}

# td_stat PID MINOR NAME: one number from 'tap-ctl stats -p PID -m MINOR';
# NAME is a top-level key (merges, retries...) or SECTION.KEY
# (requests.write).  Fails (in its subshell, as it is used in $(...)) when
# tap-ctl fails or NAME is not there.
td_stat() {
	local out v
	out=$("$TAP_CTL" stats -p "$1" -m "$2") ||
		die "tap-ctl stats failed"
	v=$(awk -v want="$3" '
		/^  "[a-z_]+": [{]/ {
			sect = $1; gsub(/[":]/, "", sect); next
		}
		/^  [}]/ { sect = "" }
		/^ +"[a-z_]+": -?[0-9]+,?$/ {
			k = $1; gsub(/[":]/, "", k)
			key = ($0 ~ /^  "/) ? k : sect "." k
			v = $2; sub(/,$/, "", v)
			if (key == want) { print v; exit }
		}' <<<"$out")
	[ -n "$v" ] || die "no $3 in tap-ctl stats: $out"
	echo "$v"
}

# td_close_detach PID MINOR: tap-ctl close, then detach the ring; the end
# of a session that tap-ctl open began (a td-rig run without -a leaves the
# image open and the ring attached, so that its stats can still be read).
td_close_detach() {
	run "$TAP_CTL" close -p "$1" -m "$2"
	run "$TAP_CTL" detach -p "$1" -m "$2"
}

# td_crash_run ROUND MINOR RIG-RUN-ARGS...: kill -9 a tapdisk in the
# middle of writes.  Starts a tapdisk (TD_PID) and, in the background,
# 'td-rig run -p TD_PID -m MINOR RIG-RUN-ARGS... --stop-on-signal'
# (RIG_PID, its output in rig.out); once the tapdisk has counted its first
# write, waits a random 10 to 609 ms (left in CRASH_DELAY, as "0.123") and
# kills it.  td-rig must then notice, save its model with the writes in
# flight marked "old or new", and exit 3; its output is printed.  TD_PID
# and RIG_PID are empty again after; the test names them in td_cleanup.
td_crash_run() {
	local round=$1 minor=$2 n=0 rc=0
	shift 2
	td_start
	"$TD_RIG" run -p "$TD_PID" -m "$minor" "$@" --stop-on-signal \
		>rig.out 2>&1 &
	RIG_PID=$!
	for _ in $(seq 1 300); do
		n=$(td_stat "$TD_PID" "$minor" requests.write 2>/dev/null) ||
			n=0
		[ "$n" -gt 0 ] && break
		kill -0 "$RIG_PID" 2>/dev/null ||
			{ cat rig.out; die "round $round: td-rig exited early"; }
		sleep 0.1
	done
	[ "$n" -gt 0 ] || die "round $round: no writes in 30 s"
	CRASH_DELAY=$(printf '0.%03d' $((RANDOM % 600 + 10)))
	sleep "$CRASH_DELAY"
	kill -9 "$TD_PID"
	wait "$TD_PID" || rc=$?
	TD_PID=
	[ $rc -eq 137 ] || die "round $round: tapdisk exited $rc before the kill"
	# It saves its model first: time enough even under valgrind.
	wait_child "$RIG_PID" 120 ||
		die "round $round: td-rig still running after tapdisk died"
	RIG_PID=
	cat rig.out
	[ "$CHILD_RC" -eq 3 ] ||
		die "round $round: td-rig exited $CHILD_RC, not 3 (tapdisk died)"
}

# ---- tapdisk under a td-rig load (pause, snapshot and xmsnap tests) ----
# They use TD_PID, MINOR and RIG_PID; the rig's output goes to rig.out.

# rig_writes: the write requests tapdisk has taken.
rig_writes() {
	td_stat "$TD_PID" "$MINOR" requests.write
}

# wait_writes N: until tapdisk has taken N more write requests (30 s).
wait_writes() {
	local want i
	want=$(($(rig_writes) + $1))
	for i in $(seq 1 300); do
		[ "$(rig_writes)" -ge "$want" ] && return 0
		kill -0 "$RIG_PID" 2>/dev/null ||
			{ cat rig.out; die "td-rig exited early"; }
		sleep 0.1
	done
	die "no progress: fewer than $1 writes in 30 s"
}

# rig_load_start SEED TYPE IMAGE: a new tapdisk serving $TMPDIR/IMAGE as
# $MINOR, under td-rig's random load (checked against TYPE.model) until
# rig_load_stop; returns once 100 writes went through.
rig_load_start() {
	td_start
	log "tapdisk $TD_PID serves $2:$3"
	"$TD_RIG" run -p "$TD_PID" -m "$MINOR" -a "$2:$TMPDIR/$3" -d 32 \
		--bs 512-128k --rw randrw --read-pct 30 --flush-every 50 \
		--stop-on-signal --timeout 120 --seed "$1" --model "$2.model" \
		>rig.out 2>&1 &
	RIG_PID=$!
	for _ in $(seq 1 300); do
		"$TAP_CTL" stats -p "$TD_PID" -m "$MINOR" >/dev/null 2>&1 && break
		kill -0 "$RIG_PID" 2>/dev/null || { cat rig.out; die "td-rig exited"; }
		sleep 0.1
	done
	wait_writes 100
}

# rig_writer_stop [SECONDS]: the td-rig writer $RIG_PID (output in
# rig.out) stops on SIGTERM within SECONDS (120) without a failed request.
rig_writer_stop() {
	kill -TERM "$RIG_PID"
	wait_child "$RIG_PID" "${1:-120}" || die "td-rig did not stop on SIGTERM"
	RIG_PID=
	cat rig.out
	[ "$CHILD_RC" -eq 0 ] || die "td-rig exited with status $CHILD_RC"
	assert_match " errors=0 " "$(cat rig.out)" "requests failed"
}

# rig_load_stop: td-rig ends without a failed request; tapdisk stops.
rig_load_stop() {
	rig_writer_stop
	td_stop "$TD_PID"
	TD_PID=
}
