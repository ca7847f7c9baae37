// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl attach: attach a tapdisk to the ring of a minor. */
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl attach -p PID -m MINOR [-h]\n",
};

int tap_ctl_attach(int argc, char **argv)
{
	return tc_target_verb(argc, argv, &cmdline, TD_CTL_ATTACH);
}
