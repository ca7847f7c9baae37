#!/usr/bin/env bash
# Crash a journaled resize at every step, and at random moments: afterwards
# either there is no journal and the image passes check with its new size,
# or 'vhd-util revert' restores it (check passes, old size, and the file is
# byte for byte what it was).  The data written before is intact always.
# Cases: a 4 GiB dynamic image with data in its first blocks grown to
# 64 GiB (blocks must move out of the way of the bigger BAT), the same for a
# differencing child (its parent locators move too), and a fixed image.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

CW=$TOOLSDIR/crash-writer
[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
[ -x "$CW" ] || die "crash-writer not built: $CW"

vsize() { "$VHD_UTIL" query -n "$1" -v; }

# after_crash CASE OLD_MB NEW_MB WHAT: check the state after a crash.
after_crash() {
	local old=$2 new=$3 what=$4 out
	if [ -e img.jnl ]; then
		# Every other time, crash the revert too and revert again.
		if [ $((RANDOM % 2)) -eq 0 ]; then
			VHD_CRASH_AT_STEP=1 "$CW" revert img.vhd img.jnl \
				>/dev/null 2>&1 || true
		fi
		if [ -e img.jnl ]; then
			run "$VHD_UTIL" revert -n img.vhd -j img.jnl
		fi
		[ ! -e img.jnl ] || die "$what: revert left the journal"
		assert_eq "$old" "$(vsize img.vhd)" "$what: size after revert"
		cmp -s img.vhd pristine.vhd ||
			die "$what: revert did not restore the file exactly"
	else
		size=$(vsize img.vhd)
		[ "$size" = "$new" ] || [ "$size" = "$old" ] ||
			die "$what: size $size is neither $old nor $new"
	fi
	out=$("$VHD_UTIL" check -n img.vhd 2>&1) ||
		{ echo "$out" >&2; die "$what: check failed"; }
	verify_data "$new" "$what"
}

# verify_data NEW_MB WHAT: after a shrink to NEW_MB, the data must be the
# old data cut at the new end; otherwise all of it must be there.
verify_data() {
	if [ "$1" -lt "$(vsize pristine.vhd)" ] &&
	   [ "$(vsize img.vhd)" = "$1" ]; then
		"$VHD_UTIL" read -n img.vhd -r 0 -c $(($1 << 11)) >now.raw
		cmp -s now.raw shrunk.raw || die "$2: data before the new end damaged"
		return
	fi
	"$CW" verify img.vhd data.log "${bases[@]}" >/dev/null ||
		die "$2: data written before the resize is damaged"
}

# one_case NAME OLD_MB NEW_MB: pristine.vhd and data.log are ready.
one_case() {
	local name=$1 old=$2 new=$3 total s rc
	log "$name: resize without a crash, counting the steps"
	cp pristine.vhd img.vhd
	total=$("$CW" resize img.vhd img.jnl "$new" | sed -n 's/^steps //p')
	[ -n "$total" ] && [ "$total" -gt 3 ] || die "$name: no steps counted"
	[ ! -e img.jnl ] || die "$name: journal left after success"
	assert_eq "$new" "$(vsize img.vhd)" "$name: new size"
	run "$VHD_UTIL" check -n img.vhd
	verify_data "$new" "$name"

	log "$name: crash at each of the $total steps"
	for s in $(seq 1 "$total"); do
		cp pristine.vhd img.vhd
		rm -f img.jnl
		rc=0
		VHD_CRASH_AT_STEP=$s "$CW" resize img.vhd img.jnl "$new" \
			>/dev/null 2>&1 || rc=$?
		[ $rc -eq 137 ] || die "$name: step $s: exit $rc, not killed"
		after_crash "$name" "$old" "$new" "$name, crash at step $s"
	done

	log "$name: vhd-util resize killed after random delays"
	for s in $(seq 1 4); do
		cp pristine.vhd img.vhd
		rm -f img.jnl
		"$VHD_UTIL" resize -n img.vhd -s "$new" -j img.jnl &
		pid=$!
		sleep "$(printf '0.%03d' $((RANDOM % 15)))"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		after_crash "$name" "$old" "$new" "$name, random kill $s"
	done
}

bases=()
run "$VHD_UTIL" create -n pristine.vhd -s 4096
# Writes all over the disk, so the first blocks of the file hold data.
"$CW" write pristine.vhd 11 24 >data.log || die "writing data failed"
one_case dynamic 4096 65536

rm -f pristine.vhd img.vhd
run "$VHD_UTIL" create -n parent.vhd -s 4096
"$CW" write parent.vhd 12 16 >parent.log || die "writing the parent failed"
run "$VHD_UTIL" snapshot -n pristine.vhd -p parent.vhd
"$CW" write pristine.vhd 13 16 >data.log || die "writing the child failed"
bases=(parent.log)
one_case differencing 4096 65536

rm -f pristine.vhd img.vhd
bases=()
run "$VHD_UTIL" create -n pristine.vhd -s 64 -r
"$CW" write pristine.vhd 14 30 >data.log || die "writing data failed"
one_case fixed 64 96
# Shrinking a fixed image is journaled too: the cut data is in the journal.
"$VHD_UTIL" read -n pristine.vhd -r 0 -c $((48 << 11)) >shrunk.raw
one_case "fixed shrink" 64 48
echo ok
