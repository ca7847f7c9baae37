# shellcheck shell=bash
# Helpers for functional tests.  Source it first thing:
#
#   . "$(dirname "$0")/lib.sh"
#
# It turns on `set -euo pipefail`.  tests/run-tests exports VHD_UTIL,
# BINDIR, TOOLSDIR, SRCDIR and a fresh TMPDIR (also the cwd); when a test
# is run by hand they default to build/default and a temporary directory.
# Exit 77 (see skip) marks a test as skipped.

set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BINDIR=${BINDIR:-$SRCDIR/build/default}
VHD_UTIL=${VHD_UTIL:-$BINDIR/vhd-util}
TOOLSDIR=${TOOLSDIR:-$BINDIR/tests/tools}
TAPDISK=${TAPDISK:-$BINDIR/tapdisk}
TAP_CTL=${TAP_CTL:-$BINDIR/tap-ctl}
TD_RIG=${TD_RIG:-$BINDIR/tests/td-rig}
if [ -z "${TMPDIR:-}" ] || [ "$TMPDIR" = /tmp ]; then
	TMPDIR=$(mktemp -d)
	# shellcheck disable=SC2064
	trap "rm -rf '$TMPDIR'" EXIT
fi
export SRCDIR BINDIR VHD_UTIL TOOLSDIR TAPDISK TAP_CTL TD_RIG TMPDIR
# tapdisk's control sockets stay inside the test's directory.
BLKTAP_CONTROL_DIR=${BLKTAP_CONTROL_DIR:-$TMPDIR/control}
export BLKTAP_CONTROL_DIR

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

# td_start [ENV=VALUE...]: start a tapdisk in the foreground (-F), in the
# background, logging to $TMPDIR/tapdisk.<pid>.log; wait for its control
# socket and set TD_PID.  (Not "pid=$(td_start)": it must be this shell's
# child, so that td_stop can collect its exit status, which is how
# valgrind and the sanitizers report.)
td_start() {
	local pid i
	# The subshell's pid becomes tapdisk's through exec, so the log
	# name is known before tapdisk runs.
	(exec env "$@" "$TAPDISK" -F >"$TMPDIR/tapdisk.$BASHPID.log" 2>&1) &
	pid=$!
	for i in $(seq 1 300); do
		[ -S "$BLKTAP_CONTROL_DIR/ctl$pid" ] && { TD_PID=$pid; return 0; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	cat "$TMPDIR/tapdisk.$pid.log" >&2
	die "tapdisk $pid did not come up"
}

# td_stop PID: SIGTERM, wait (60 s at most), and fail unless it exited 0.
td_stop() {
	local pid=$1 rc=0 i
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		cat "$TMPDIR/tapdisk.$pid.log" >&2 || true
		die "tapdisk $pid did not exit on SIGTERM"
	fi
	wait "$pid" || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$TMPDIR/tapdisk.$pid.log" >&2 || true
		die "tapdisk $pid exited with status $rc"
	fi
}
