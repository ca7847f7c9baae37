#!/usr/bin/env bash
# Kill a writer (SIGKILL) at random moments while it allocates blocks; every
# time the image must pass 'vhd-util check' and hold every write that was
# acknowledged before the kill (the write in flight may be there or not).
# Some rounds write to a differencing child of a written parent.
# shellcheck source=tests/functional/lib.sh
. "$(dirname "$0")/lib.sh"

CW=$TOOLSDIR/crash-writer
[ -x "$VHD_UTIL" ] || die "vhd-util not built: $VHD_UTIL"
[ -x "$CW" ] || die "crash-writer not built: $CW"
ROUNDS=${CRASH_ROUNDS:-25}

# Timing varies; the seed makes each round's writes reproducible.
for round in $(seq 1 "$ROUNDS"); do
	rm -f img.vhd parent.vhd ./*.log
	seed=$((round * 7919))
	bases=()
	if [ $((round % 3)) -eq 0 ]; then
		run "$VHD_UTIL" create -n parent.vhd -s 512
		"$CW" write parent.vhd $((seed + 1)) 40 >parent.log ||
			die "round $round: writing the parent failed"
		run "$VHD_UTIL" snapshot -n img.vhd -p parent.vhd
		bases=(parent.log)
		kind=differencing
	else
		run "$VHD_UTIL" create -n img.vhd -s 1024
		kind=dynamic
	fi
	delay=$(printf '0.%03d' $((RANDOM % 296 + 5)))
	"$CW" write img.vhd "$seed" >img.log 2>cw.err &
	pid=$!
	sleep "$delay"
	kill -9 "$pid" 2>/dev/null || true
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	# 137: killed; 0 is impossible (it writes forever); anything else is
	# a failure of the writer itself.
	if [ $rc -ne 137 ]; then
		cat cw.err >&2
		die "round $round: crash-writer exited $rc instead of being killed"
	fi
	acks=$(grep -c '^ack ' img.log || true)
	log "round $round ($kind): killed after ${delay}s, $acks writes acknowledged"
	out=$("$VHD_UTIL" check -n img.vhd 2>&1) ||
		{ echo "$out" >&2; die "round $round: check failed"; }
	"$CW" verify img.vhd img.log "${bases[@]}" ||
		die "round $round: acknowledged data is missing"
done
echo ok
