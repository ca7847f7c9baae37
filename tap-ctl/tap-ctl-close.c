// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl close: drain (or with -f fail) in-flight I/O and close the images. */
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl close -p PID -m MINOR [-f] [-h]\n"
	       "  -f  fail in-flight I/O instead of waiting for it\n");
}

int tap_ctl_close(int argc, char **argv)
{
	static struct td_ctl_msg req, rep;
	struct tc_target t = { .pid = -1, .minor = -1 };
	int c, err;

	while ((c = getopt(argc, argv, ":p:m:fh")) != -1) {
		switch (c) {
		case 'p':
		case 'm':
			err = tc_target_opt(&t, c, optarg);
			if (err)
				return err;
			break;
		case 'f':
			req.flags |= TD_CLOSE_FORCE;
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
	req.type = TD_CTL_CLOSE;
	if (tc_request(&t, &req, &rep) < 0)
		return tc_fail();
	return TC_EXIT_OK;
}
