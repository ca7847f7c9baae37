#!/usr/bin/env bash
# tapdisk's control socket under abuse: each kind of malformed message
# (short, empty, bad magic, version, type, length, oversized, unterminated
# string, descriptors where none belong, too many descriptors, a negative
# minor, unknown flags) gets an error reply naming the problem, the
# connection stays usable, no descriptor leaks, and tapdisk keeps serving.
# Also: clients beyond the limit are turned away, clients that hang up
# mid-request (even while their pause drains) or pipeline requests are
# harmless, fault injection is off unless enabled, and SIGTERM/SIGINT end
# tapdisk cleanly (socket removed),
# with or without an image open, in the foreground or as a daemon.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd python3
RAW=$TOOLSDIR/ctl-raw
need_built "$TAPDISK" "$TAP_CTL" "$TD_RIG" "$RAW"
cd "$TMPDIR"
td_cleanup --control-dir RIG_PID TD_PID DAEMON

# nfds PID: descriptors open in the process.
nfds() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l
}

# alive PID: tapdisk PID still answers and lists itself.
alive() {
	kill -0 "$1" 2>/dev/null || die "tapdisk $1 died"
	"$TAP_CTL" list -p "$1" | grep -q "^pid=$1 " ||
		die "tapdisk $1 is not listed"
}

# A client speaking the protocol by hand, for what ctl-raw cannot do.
cat >ctl.py <<'PY'
import os, socket, struct, sys

HDR = struct.Struct('<IHHIIiiII')
MAGIC, INFO = 0x54444331, 1

def path(pid):
    return os.path.join(os.environ['BLKTAP_CONTROL_DIR'], 'ctl%d' % pid)

def info(cookie, magic=MAGIC):
    return HDR.pack(magic, 1, INFO, HDR.size, cookie, -1, 0, 0, 0)

def reply(s):
    m = s.recv(65536)
    if not m:
        return None
    magic, ver, typ, length, cookie, minor, status, flags, _ = \
        HDR.unpack_from(m)
    assert magic == MAGIC and length == len(m), m[:32]
    return cookie, status

def connect(pid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Blocking: a full backlog waits for tapdisk to accept (the caller
    # runs under timeout); a timeout would make connect fail with EAGAIN.
    s.connect(path(pid))
    s.settimeout(20)
    return s

pid, what = int(sys.argv[1]), sys.argv[2]
if what == 'flood':
    # More clients than tapdisk serves at once: the extra ones are
    # disconnected, the others all get their answer.
    socks = [connect(pid) for _ in range(int(sys.argv[3]))]
    served = 0
    for i, s in enumerate(socks):
        try:
            s.send(info(i))
            r = reply(s)
        except (BrokenPipeError, ConnectionResetError):
            r = None
        if r is not None:
            assert r == (i, 0), r
            served += 1
    print(served)
elif what == 'hangup':
    # Ask and leave before the answer, many times.
    for i in range(50):
        s = connect(pid)
        s.send(info(i))
        s.close()
elif what == 'pipeline':
    # Several requests before reading: one reply each, in order.
    s = connect(pid)
    for i in range(5):
        s.send(info(100 + i))
    got = [reply(s) for _ in range(5)]
    assert got == [(100 + i, 0) for i in range(5)], got
elif what == 'pause-leave':
    # Ask for a pause and hang up without waiting for it.
    s = connect(pid)
    s.send(HDR.pack(MAGIC, 1, 6, HDR.size, 1, int(sys.argv[3]), 0, 0, 0))
    s.close()
elif what == 'recover':
    # An error reply leaves the connection usable.
    s = connect(pid)
    s.send(info(7, magic=0x12345678))
    c, st = reply(s)
    assert st < 0, st
    s.send(info(8))
    assert reply(s) == (8, 0)
PY

td_start
P=$TD_PID
before=$(nfds "$P")

log "malformed messages get error replies"
# kind  errno  words of the reason
while read -r kind err words; do
	out=$(timeout 30 "$RAW" "$P" "$kind") ||
		die "$kind: no reply from tapdisk"
	echo "    $kind: $out"
	assert_match "^status=$err msg=.*$words" "$out" "reply to '$kind'"
done <<'EOF'
short     -71 shorter than the 32-byte header
empty     -71 shorter than the 32-byte header
magic     -71 bad magic 0xdeadbeef
version   -71 unsupported protocol version 2
type      -22 unknown request type 77
length    -71 OPEN: 48 bytes, but this request is
long      -71 message longer than [0-9]+ bytes
string    -22 OPEN: params are not NUL-terminated
fds       -22 DETACH: 2 descriptors attached
many-fds  -22 too many descriptors
minor     -22 PAUSE: invalid minor -5
flags     -22 DETACH: unknown flags 0x40
fault     -1  fault injection is disabled
valid     0
EOF
alive "$P"
assert_eq "$before" "$(nfds "$P")" "descriptors open in tapdisk"

log "connections: a flood, hang-ups, pipelining, recovery"
served=$(timeout 60 python3 ctl.py "$P" flood 24) || die "flood client failed"
assert_eq 16 "$served" "clients served at once"
timeout 60 python3 ctl.py "$P" hangup || die "hang-up client failed"
timeout 60 python3 ctl.py "$P" pipeline || die "pipelining failed"
timeout 60 python3 ctl.py "$P" recover || die "connection not usable after an error"
alive "$P"
assert_eq "$before" "$(nfds "$P")" "descriptors open after the clients left"

log "SIGTERM with an image open: close, exit 0, socket removed"
truncate -s 4M raw.img
run "$TAP_CTL" open -p "$P" -m 1 -a aio:raw.img
td_stop "$P"
TD_PID=
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$P" ] || die "socket left behind"

log "fault injection when enabled"
td_start TAPDISK_TEST_FAULTS=1
out=$(timeout 30 "$RAW" "$TD_PID" fault) || die "no reply"
assert_eq "status=0 msg=" "$out" "fault request"
P=$TD_PID

log "a client that leaves while its pause drains"
# Writes that keep failing with EAGAIN stay in flight (retried) until the
# 10 s timeout, so the pause cannot finish before its client has left.
run "$TAP_CTL" open -p "$P" -m 2 -a aio:raw.img -t 10
run "$TD_RIG" fault -p "$P" -m 2 -c 1000000 -e EAGAIN -o write
"$TD_RIG" run -p "$P" -m 2 -d 8 --bs 4k --rw randwrite --ops 8 \
	--expect-errors --timeout 60 --quiet >rig.log 2>&1 &
RIG_PID=$!
for _ in $(seq 1 300); do
	[ "$(td_stat "$P" 2 inflight)" -gt 0 ] && break
	sleep 0.1
done
[ "$(td_stat "$P" 2 inflight)" -gt 0 ] || die "no request in flight"
timeout 60 python3 ctl.py "$P" pause-leave 2 || die "pause client failed"
assert_match "state=0x[0-9a-f]*[4567cdef] " "$("$TAP_CTL" list -p "$P")" \
	"pause requested while writes are in flight"
for _ in $(seq 1 600); do
	[[ $("$TAP_CTL" list -p "$P") == *" state=0xb "* ]] && break
	sleep 0.1
done
assert_match " state=0xb " "$("$TAP_CTL" list -p "$P")" "paused at last"
grep -q "pause of minor 2 finished .* after its client left" \
	"$TMPDIR/tapdisk.$P.log" || die "the orphaned pause was not logged"
wait "$RIG_PID" || { cat rig.log; die "td-rig failed"; }
RIG_PID=
run "$TD_RIG" fault -p "$P" -m 2 -c 0
expect_fail "$TAP_CTL" pause -p "$P" -m 2
assert_match "already paused" "$FAIL_MSG"
run "$TAP_CTL" unpause -p "$P" -m 2
run "$TAP_CTL" close -p "$P" -m 2
run "$TAP_CTL" detach -p "$P" -m 2
# Its slot was freed with the pause: all 16 are there again.
served=$(timeout 60 python3 ctl.py "$P" flood 20) || die "flood client failed"
assert_eq 16 "$served" "clients served at once after the orphaned pause"

log "SIGINT"
kill -INT "$P"
wait_child "$P" 30 || die "tapdisk did not exit on SIGINT"
TD_PID=
assert_eq 0 "$CHILD_RC" "exit status after SIGINT"
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$P" ] || die "socket left behind"

log "as a daemon: pid on stdout, socket ready, SIGTERM"
DAEMON=$(timeout 60 "$TAPDISK") || die "tapdisk did not start"
assert_match '^[1-9][0-9]*$' "$DAEMON" "tapdisk's output"
[ -S "$BLKTAP_CONTROL_DIR/ctl$DAEMON" ] || die "no socket when the pid came back"
alive "$DAEMON"
kill -TERM "$DAEMON"
wait_gone "$DAEMON"
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$DAEMON" ] || die "socket left behind"
DAEMON=

log "a daemon that cannot start says why, exit 1"
touch file
BLKTAP_CONTROL_DIR=$TMPDIR/file/sub expect_fail timeout 60 "$TAPDISK"
assert_match "^tapdisk: .*file/sub" "$FAIL_MSG"
rc=0
BLKTAP_CONTROL_DIR=$TMPDIR/file/sub "$TAPDISK" 2>/dev/null || rc=$?
assert_eq 1 "$rc" "exit status of a failed start"
rc=0
BLKTAP_CONTROL_DIR=$TMPDIR/file/sub "$TAPDISK" -F 2>err || rc=$?
assert_eq 1 "$rc" "exit status of a failed start in the foreground"
assert_eq 1 "$(grep -c . err)" "lines on stderr in the foreground"

echo ok
