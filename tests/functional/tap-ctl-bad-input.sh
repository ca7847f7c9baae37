#!/usr/bin/env bash
# tap-ctl against a live tapdisk (no ring: open needs none): every failure
# is one line "tap-ctl: VERB: reason" and a non-zero status — a dead pid,
# an unknown minor, a missing or wrong image, a bad type prefix, bad
# numbers; pause on a paused disk says so with status 3 and changes
# nothing; unpause refuses an image of another size.  Along the way: list
# and its filters, stats as valid JSON, spawn, and the control directory's
# checks.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd python3
need_built "$TAPDISK" "$TAP_CTL" "$VHD_UTIL"
cd "$TMPDIR"
SPAWNED=()
td_cleanup --control-dir TD_PID SPAWNED

# A pid that is not running: a finished child's.
(exit 0) &
DEAD=$!
wait "$DEAD" || true
kill -0 "$DEAD" 2>/dev/null && die "pid $DEAD is alive"

truncate -s 8M raw.img
truncate -s 4M small.img
run "$VHD_UTIL" create -n disk.vhd -s 8

td_start
P=$TD_PID
log "list shows the idle tapdisk"
assert_eq "pid=$P minor=- state=0x0 args=-" "$("$TAP_CTL" list)"

log "a dead pid"
for v in attach detach close pause unpause stats; do
	fails_with 1 "^tap-ctl: $v: no tapdisk with pid $DEAD\$" \
		"$TAP_CTL" "$v" -p "$DEAD" -m 0
done
fails_with 1 "^tap-ctl: open: no tapdisk with pid $DEAD\$" \
	"$TAP_CTL" open -p "$DEAD" -m 0 -a aio:raw.img
assert_eq "" "$("$TAP_CTL" list -p "$DEAD")" "list -p of a dead pid"

log "a stale socket of a dead tapdisk is skipped and removed"
python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).bind(sys.argv[1])' \
	"$BLKTAP_CONTROL_DIR/ctl$DEAD"
[ -S "$BLKTAP_CONTROL_DIR/ctl$DEAD" ] || die "no stale socket made"
fails_with 1 "no tapdisk with pid $DEAD\$" "$TAP_CTL" pause -p "$DEAD" -m 0
assert_eq "pid=$P minor=- state=0x0 args=-" "$("$TAP_CTL" list)"
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$DEAD" ] || die "stale socket not removed"

log "type prefixes are checked before tapdisk is asked"
# A dead pid: the type error must come first.
fails_with 2 "unknown image type 'foo'" \
	"$TAP_CTL" open -p "$DEAD" -m 0 -a foo:/x
fails_with 2 "unknown image type 'VHD'" \
	"$TAP_CTL" open -p "$DEAD" -m 0 -a VHD:/x
fails_with 2 "is not type:/path" "$TAP_CTL" open -p "$DEAD" -m 0 -a raw.img
fails_with 2 "missing path after 'vhd:'" \
	"$TAP_CTL" open -p "$DEAD" -m 0 -a vhd:
fails_with 2 "unknown image type 'qcow2'" \
	"$TAP_CTL" unpause -p "$DEAD" -m 0 -a qcow2:/x
fails_with 2 "unknown image type 'raw'" "$TAP_CTL" list -t raw
long=aio:/$(head -c 5000 /dev/zero | tr '\0' a)
fails_with 2 "too long" "$TAP_CTL" open -p "$DEAD" -m 0 -a "$long"

log "bad numbers"
for pid in abc -1 0 1x "" 2147483648 " 1"; do
	fails_with 2 "invalid pid '$pid'" "$TAP_CTL" pause -p "$pid" -m 0
done
for minor in abc -1 1048576 0x10 "" 3.0; do
	fails_with 2 "invalid minor '$minor'" "$TAP_CTL" pause -p "$P" -m "$minor"
	fails_with 2 "invalid minor '$minor'" "$TAP_CTL" list -m "$minor"
done
for t in 0 abc 86401 -5; do
	fails_with 2 "invalid -t timeout '$t'" \
		"$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img -t "$t"
done
fails_with 2 "invalid -e minor 'x'" \
	"$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img -e x

log "missing and wrong images (tapdisk's messages)"
fails_with 1 "^tap-ctl: open: .*nope\\.img" \
	"$TAP_CTL" open -p "$P" -m 3 -a aio:nope.img
fails_with 1 "^tap-ctl: open: .*raw\\.img" \
	"$TAP_CTL" open -p "$P" -m 3 -a vhd:raw.img
assert_eq "pid=$P minor=- state=0x0 args=-" "$("$TAP_CTL" list)" \
	"state after failed opens"

log "open (a relative path is made absolute)"
run "$TAP_CTL" open -p "$P" -m 3 -a aio:raw.img
LINE="pid=$P minor=3 state=0x2 args=aio:$TMPDIR/raw.img"
assert_eq "$LINE" "$("$TAP_CTL" list)"
fails_with 1 "already has .*raw\\.img open" \
	"$TAP_CTL" open -p "$P" -m 3 -a aio:small.img

log "an unknown minor"
for v in pause close stats detach unpause; do
	fails_with 1 "^tap-ctl: $v: unknown minor 4" "$TAP_CTL" "$v" -p "$P" -m 4
done

log "list filters"
for f in "-p $P" "-m 3" "-t aio" "-f raw.img" "-f $TMPDIR/raw.img" \
	 "-p $P -m 3 -t aio -f raw.img"; do
	# shellcheck disable=SC2086
	assert_eq "$LINE" "$("$TAP_CTL" list $f)" "list $f"
done
for f in "-p $DEAD" "-m 4" "-t vhd" "-f small.img" "-p $P -t vhd"; do
	# shellcheck disable=SC2086
	assert_eq "" "$("$TAP_CTL" list $f)" "list $f"
done

log "on a terminal, list prints a table"
if command -v script >/dev/null 2>&1; then
	table=$(script -qec "'$TAP_CTL' list" /dev/null </dev/null | tr -d '\r')
	echo "$table"
	assert_match "^ +PID +MINOR +STATE +ARGS\$" "$(head -n 1 <<<"$table")" \
		"table header"
	assert_match "^ +$P +3 +0x2 +aio:$TMPDIR/raw\\.img\$" \
		"$(sed -n 2p <<<"$table")" "table row"
else
	log "script(1) not found: table not checked"
fi

log "stats is valid JSON with every field"
"$TAP_CTL" stats -p "$P" -m 3 >stats.json
python3 -m json.tool stats.json >/dev/null || die "stats is not valid JSON"
python3 - "$P" "aio:$TMPDIR/raw.img" stats.json <<'PY' || die "stats fields"
import json, sys
pid, params, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = json.load(open(path))
for k in ("pid", "minor", "state", "timeout", "requests", "errors", "bad",
          "inflight", "inflight_max", "merges", "iocbs", "retries",
          "timeouts", "stalls", "errors_transient", "errors_permanent",
          "images", "domains"):
    assert k in s, "missing " + k
assert s["pid"] == pid and s["minor"] == 3 and s["state"] == 2, s
assert s["timeout"] == 120, s["timeout"]
assert set(s["requests"]) == {"read", "write", "flush", "discard",
                              "write_zeroes"}, s["requests"]
assert len(s["images"]) == 1, s["images"]
im = s["images"][0]
assert im["params"] == params, im["params"]
for k in ("hits", "fails", "bytes"):
    assert set(im[k]) == {"read", "write"}, im
assert isinstance(s["domains"], list)
PY

log "pause is idempotent, and says so"
run "$TAP_CTL" pause -p "$P" -m 3
PAUSED="pid=$P minor=3 state=0xa args=aio:$TMPDIR/raw.img"
assert_eq "$PAUSED" "$("$TAP_CTL" list)" "paused state"
fails_with 3 "^tap-ctl: pause: minor 3 of tapdisk $P is already paused" \
	"$TAP_CTL" pause -p "$P" -m 3
assert_eq "$PAUSED" "$("$TAP_CTL" list)" "state after a second pause"

log "unpause refuses an image of another size"
fails_with 1 "^tap-ctl: unpause: .*small\\.img" \
	"$TAP_CTL" unpause -p "$P" -m 3 -a aio:small.img
assert_eq "$PAUSED" "$("$TAP_CTL" list)" "state after a refused unpause"
fails_with 1 "^tap-ctl: unpause: .*nope\\.img" \
	"$TAP_CTL" unpause -p "$P" -m 3 -a aio:nope.img
run "$TAP_CTL" unpause -p "$P" -m 3
assert_eq "$LINE" "$("$TAP_CTL" list)" "state after unpause"
fails_with 1 "not paused" "$TAP_CTL" unpause -p "$P" -m 3

log "unpause -a onto another image of the same size"
cp raw.img same.img
run "$TAP_CTL" pause -p "$P" -m 3
run "$TAP_CTL" unpause -p "$P" -m 3 -a aio:same.img
assert_eq "pid=$P minor=3 state=0x2 args=aio:$TMPDIR/same.img" \
	"$("$TAP_CTL" list)"

log "close"
run "$TAP_CTL" close -p "$P" -m 3
assert_eq "pid=$P minor=- state=0x0 args=-" "$("$TAP_CTL" list)"
fails_with 1 "^tap-ctl: close: " "$TAP_CTL" close -p "$P" -m 3

log "a VHD, read-only, with a timeout"
run "$TAP_CTL" open -p "$P" -m 5 -a vhd:disk.vhd -R -t 30 -D
assert_eq "pid=$P minor=5 state=0x2 args=vhd:$TMPDIR/disk.vhd" \
	"$("$TAP_CTL" list -t vhd)"
stats=$("$TAP_CTL" stats -p "$P" -m 5)
python3 -c 'import json, sys
s = json.loads(sys.argv[1])
assert s["timeout"] == 30 and s["images"][0]["params"].startswith("vhd:"), s' \
	"$stats" || die "stats of the VHD"
run "$TAP_CTL" close -p "$P" -m 5 -f

log "no ring: attach needs the kernel, detach has nothing to do"
fails_with 1 "^tap-ctl: attach: " "$TAP_CTL" attach -p "$P" -m 5
fails_with 1 "^tap-ctl: detach: " "$TAP_CTL" detach -p "$P" -m 5
fails_with 1 "^tap-ctl: open: .*-e" \
	"$TAP_CTL" open -p "$P" -m 5 -a aio:raw.img -e 2

log "SIGTERM: tapdisk exits 0 and removes its socket"
td_stop "$P"
TD_PID=
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$P" ] || die "socket left behind"
fails_with 1 "no tapdisk with pid $P\$" "$TAP_CTL" stats -p "$P" -m 3
assert_eq "" "$("$TAP_CTL" list)" "list after exit"

log "spawn: a daemon, its pid on stdout"
S=$("$TAP_CTL" spawn) || die "spawn failed"
assert_match '^[1-9][0-9]*$' "$S" "spawn's output"
SPAWNED+=("$S")
assert_eq "pid=$S minor=- state=0x0 args=-" "$("$TAP_CTL" list)"
assert_eq "$S" "$(cat "/proc/$S/stat" | cut -d' ' -f6)" \
	"the daemon leads its own session"
kill -TERM "$S"
wait_gone "$S"
[ ! -e "$BLKTAP_CONTROL_DIR/ctl$S" ] || die "socket left behind by $S"

log "spawn: tapdisk's own errors come back as one line"
(
	export BLKTAP_CONTROL_DIR=relative/dir
	fails_with 1 "^tap-ctl: spawn: .*not an absolute path" "$TAP_CTL" spawn
)
touch notadir
(
	export BLKTAP_CONTROL_DIR=$TMPDIR/notadir
	fails_with 1 "^tap-ctl: spawn: .*notadir exists and is not a directory" \
		"$TAP_CTL" spawn
)
fails_with 1 "^tap-ctl: spawn: cannot run /nonexistent/tapdisk" \
	env TAPDISK=/nonexistent/tapdisk "$TAP_CTL" spawn

log "the control directory is made 0700"
mkdir -m 0755 loose
S=$(BLKTAP_CONTROL_DIR=$TMPDIR/loose "$TAP_CTL" spawn) || die "spawn failed"
SPAWNED+=("$S")
assert_eq 700 "$(stat -c %a loose)" "mode of the control directory"
assert_eq 600 "$(stat -c %a "loose/ctl$S")" "mode of the socket"
kill -TERM "$S"
wait_gone "$S"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	mkdir -m 0700 foreign
	chown nobody foreign
	(
		export BLKTAP_CONTROL_DIR=$TMPDIR/foreign
		fails_with 1 "^tap-ctl: spawn: .*foreign is owned by uid" \
			"$TAP_CTL" spawn
	)
fi

echo ok
