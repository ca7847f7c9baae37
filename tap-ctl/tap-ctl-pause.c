// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl pause: stop admitting requests, drain in-flight I/O and close
 * the images.  Pausing a paused disk changes nothing and says so, with its
 * own exit status, so scripts can tell it from a failure.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl pause -p PID -m MINOR [-h]\n"
	       "exit status 3: the disk was already paused (nothing changed)\n");
}

int tap_ctl_pause(int argc, char **argv)
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
	req.type = TD_CTL_PAUSE;
	err = tc_request(&t, &req, &rep);
	if (err == -EALREADY)
		return tc_error(TC_EXIT_ALREADY,
				"minor %d of tapdisk %d is already paused (nothing changed)",
				t.minor, (int)t.pid);
	if (err < 0)
		return tc_fail();
	return TC_EXIT_OK;
}
