// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl detach: detach a tapdisk from its ring. */
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl detach -p PID -m MINOR [-h]\n");
}

int tap_ctl_detach(int argc, char **argv)
{
	static struct td_ctl_msg req, rep;
	struct tc_target t = { .pid = -1, .minor = -1 };
	int c, err;

	while ((c = getopt(argc, argv, ":p:m:h")) != -1) {
		switch (c) {
		case 'p':
		case 'm':
			err = tc_target_opt(&t, c, optarg);
			if (err)
				return err;
			break;
		case 'h':
			usage();
			return TC_EXIT_OK;
		default:
			return tc_opt_error(c);
		}
	}
	if (!tc_no_args(argc, argv))
		return TC_EXIT_USAGE;
	err = tc_target_done(&t);
	if (err)
		return err;
	req.type = TD_CTL_DETACH;
	if (tc_request(&t, &req, &rep) < 0)
		return tc_fail();
	return TC_EXIT_OK;
}
