#!/usr/bin/env bash
# The command lines of tap-ctl and tapdisk, without any tapdisk running:
# -h prints usage on stdout and exits 0; no verb prints usage on stderr;
# an unknown verb, an unknown flag, a missing option argument or a stray
# argument each give one line and exit 2.  The man pages render cleanly
# and document every verb and flag that -h lists.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

need_built "$TAP_CTL" "$TAPDISK"
cd "$TMPDIR"
VERBS=(list spawn attach detach open close pause unpause stats
	allocate free create destroy major check)

log "tap-ctl without a verb"
rc=0
"$TAP_CTL" >out 2>err || rc=$?
assert_eq 2 "$rc" "exit status without a verb"
[ ! -s out ] || die "usage went to stdout"
grep -q '^usage: tap-ctl' err || die "no usage on stderr"

log "tap-ctl -h lists every verb"
"$TAP_CTL" -h >out 2>err || die "tap-ctl -h failed"
[ ! -s err ] || die "tap-ctl -h wrote to stderr"
for v in "${VERBS[@]}"; do
	grep -q "^  $v\b" out || die "tap-ctl -h does not list $v"
done

log "each verb's -h"
for v in "${VERBS[@]}"; do
	"$TAP_CTL" "$v" -h >out 2>err || die "tap-ctl $v -h failed"
	grep -q "^usage: tap-ctl $v" out || die "tap-ctl $v -h: no usage"
	[ ! -s err ] || die "tap-ctl $v -h wrote to stderr"
done

log "unknown verb"
expect_fail "$TAP_CTL" frobnicate
assert_match "frobnicate" "$FAIL_MSG"
assert_eq 2 "$(exit_status "$TAP_CTL" frobnicate)" "exit status"

log "unknown flags, missing arguments, stray arguments"
for v in "${VERBS[@]}"; do
	expect_fail "$TAP_CTL" "$v" -Z
	assert_eq "tap-ctl: $v: unknown option -Z" "$FAIL_MSG"
	assert_eq 2 "$(exit_status "$TAP_CTL" "$v" -Z)" "$v -Z exit status"
	expect_fail "$TAP_CTL" "$v" stray
	assert_match "^tap-ctl: $v: unexpected argument 'stray'" "$FAIL_MSG"
done
for v in attach detach open close pause unpause stats destroy; do
	expect_fail "$TAP_CTL" "$v" -m 1 -p
	assert_eq "tap-ctl: $v: option -p needs an argument" "$FAIL_MSG"
	expect_fail "$TAP_CTL" "$v" -m 1
	assert_match "missing -p" "$FAIL_MSG"
	expect_fail "$TAP_CTL" "$v" -p 1
	assert_match "missing -m" "$FAIL_MSG"
	assert_eq 2 "$(exit_status "$TAP_CTL" "$v" -p 1)" "$v without -m"
done
expect_fail "$TAP_CTL" open -p 1 -m 1
assert_match "missing -a" "$FAIL_MSG"
expect_fail "$TAP_CTL" create
assert_match "missing -a" "$FAIL_MSG"
assert_eq 2 "$(exit_status "$TAP_CTL" create)" "create without -a"
expect_fail "$TAP_CTL" free
assert_match "missing -m" "$FAIL_MSG"
expect_fail "$TAP_CTL" free -m x
assert_match "minor" "$FAIL_MSG"
expect_fail "$TAP_CTL" list -t
assert_eq "tap-ctl: list: option -t needs an argument" "$FAIL_MSG"

log "tapdisk's command line"
"$TAPDISK" -h >out 2>err || die "tapdisk -h failed"
grep -q '^usage: tapdisk' out || die "tapdisk -h: no usage"
[ ! -s err ] || die "tapdisk -h wrote to stderr"
expect_fail "$TAPDISK" -x
assert_match "unknown option -x" "$FAIL_MSG"
assert_eq 2 "$(exit_status "$TAPDISK" -x)" "tapdisk -x exit status"
expect_fail "$TAPDISK" -F extra
assert_match "unexpected argument 'extra'" "$FAIL_MSG"
assert_eq 2 "$(exit_status "$TAPDISK" extra)" "tapdisk extra exit status"
# Bad usage must not have started anything.
fresh=$TMPDIR/usage-control
BLKTAP_CONTROL_DIR=$fresh expect_fail "$TAPDISK" -F -q
[ ! -e "$fresh" ] || die "tapdisk created $fresh on a usage error"

log "man pages"
for page in tap-ctl tapdisk; do
	[ -f "$SRCDIR/man/$page.8" ] || die "man/$page.8 is missing"
done
for v in "${VERBS[@]}"; do
	grep -q "^\.SS $v\b" "$SRCDIR/man/tap-ctl.8" ||
		die "tap-ctl.8 has no section for $v"
done
# Every flag a verb's getopt knows is in the man page's section for it.
for v in "${VERBS[@]}"; do
	section=$(sed -n "/^\.SS $v\b/,/^\.S[SH] /p" "$SRCDIR/man/tap-ctl.8")
	flags=$("$TAP_CTL" "$v" -h | head -n 1 | grep -oE '[[ ]-[A-Za-z]\b' |
		tr -d '[ ' | sort -u)
	for f in $flags; do
		[ "$f" = -h ] && continue
		grep -q -- "\\\\$f\b" <<<"$section" ||
			die "tap-ctl.8: $v does not document $f"
	done
done
if command -v groff >/dev/null 2>&1; then
	for page in tap-ctl tapdisk; do
		warn=$(LC_ALL=C groff -man -ww -z "$SRCDIR/man/$page.8" 2>&1)
		[ -z "$warn" ] || die "groff warns about $page.8: $warn"
	done
else
	log "groff not found: rendering not checked"
fi

echo ok
