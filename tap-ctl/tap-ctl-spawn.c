// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl spawn: start a tapdisk and print its pid. */
#include <stdio.h>

#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl spawn [-h]\n",
	.target = TC_TARGET_NONE,
};

int tap_ctl_spawn(int argc, char **argv)
{
	int rc = tc_parse(argc, argv, &cmdline, NULL, NULL);
	pid_t pid;

	if (rc != TC_CONTINUE)
		return rc;
	pid = tdc_spawn();
	if (pid < 0)
		return tc_fail();
	printf("%d\n", (int)pid);
	return TC_EXIT_OK;
}
