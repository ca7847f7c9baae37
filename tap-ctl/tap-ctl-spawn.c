// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl spawn: start a tapdisk and print its pid. */
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl spawn [-h]\n");
}

int tap_ctl_spawn(int argc, char **argv)
{
	pid_t pid;
	int c;

	while ((c = getopt(argc, argv, ":h")) != -1) {
		if (c != 'h')
			return tc_opt_error(c);
		usage();
		return TC_EXIT_OK;
	}
	if (!tc_no_args(argc, argv))
		return TC_EXIT_USAGE;
	pid = tdc_spawn();
	if (pid < 0)
		return tc_fail();
	printf("%d\n", (int)pid);
	return TC_EXIT_OK;
}
