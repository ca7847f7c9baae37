// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl detach: detach a tapdisk from its ring. */
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl detach -p PID -m MINOR [-h]\n",
};

int tap_ctl_detach(int argc, char **argv)
{
	return tc_target_verb(argc, argv, &cmdline, TD_CTL_DETACH);
}
