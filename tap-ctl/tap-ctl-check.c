// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl check: is the blktap2 kernel module loaded, and its control
 * node in place?  One line either way; exit status 0 or 1.
 */
#include <stdio.h>

#include "blktap-ring.h"
#include "kernel.h"
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl check [-h]\n"
		 "exit status 0: the module is loaded and " BLKTAP2_CONTROL
		 " is its control device\n",
	.target = TC_TARGET_NONE,
};

int tap_ctl_check(int argc, char **argv)
{
	int rc = tc_parse(argc, argv, &cmdline, NULL, NULL);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tck_check();
	if (rc)
		return rc;
	printf("blktap2 kernel module loaded; %s ready\n", BLKTAP2_CONTROL);
	return fflush(stdout) ? tc_error(TC_EXIT_FAIL, "cannot write the "
					 "result") : TC_EXIT_OK;
}
