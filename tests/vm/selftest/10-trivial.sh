#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Rig self-test: the guest runs a script, which sees its tools and the data
# disk, and reports a result.
# shellcheck source=tests/vm/guest/lib.sh
. /tests/lib.sh
T=trivial
for c in tapdisk tap-ctl vhd-util td-rig mkfs.ext4 fsck.ext4 fio sha256sum; do
	command -v $c >/dev/null || die "$c is missing"
done
run fio --version
run vhd-util create -n /data/selftest.vhd -s 16
run vhd-util check -n /data/selftest.vhd
run tap-ctl list
grep -q " /data " /proc/mounts || die "/data is not mounted"
pass trivial
