#!/usr/bin/env bash
# vhd-util without a verb prints usage on stderr and fails; an unknown verb
# fails with a one-line error naming it.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"

log "no arguments"
rc=0
"$VHD_UTIL" >"$TMPDIR/out" 2>"$TMPDIR/err" || rc=$?
cat "$TMPDIR/err"
[ $rc -ne 0 ] || die "vhd-util with no arguments exited 0"
[ $rc -lt 124 ] || die "vhd-util with no arguments crashed (status $rc)"
[ -s "$TMPDIR/err" ] || die "no usage on stderr"
grep -qi usage "$TMPDIR/err" || die "stderr does not mention usage"
[ ! -s "$TMPDIR/out" ] || die "usage went to stdout too"

log "unknown verb"
expect_fail "$VHD_UTIL" nosuchverb
assert_match nosuchverb "$FAIL_MSG" "the error names the verb"

echo ok
