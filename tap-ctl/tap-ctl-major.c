// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl major: print the block major of the tapdevs. */
#include <stdio.h>

#include "kernel.h"
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl major [-h]\n",
	.target = TC_TARGET_NONE,
};

int tap_ctl_major(int argc, char **argv)
{
	unsigned int major;
	int rc = tc_parse(argc, argv, &cmdline, NULL, NULL);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tck_block_major(&major);
	if (rc)
		return rc;
	printf("%u\n", major);
	return fflush(stdout) ? tc_error(TC_EXIT_FAIL, "cannot write the "
					 "major") : TC_EXIT_OK;
}
