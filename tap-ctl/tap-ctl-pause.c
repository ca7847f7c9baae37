// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl pause: stop admitting requests, drain in-flight I/O and close
 * the images.  Pausing a paused disk changes nothing and says so, with its
 * own exit status, so scripts can tell it from a failure.
 */
#include <errno.h>

#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl pause -p PID -m MINOR [-h]\n"
		 "exit status 3: the disk was already paused (nothing changed)\n",
};

int tap_ctl_pause(int argc, char **argv)
{
	struct tc_target t;
	int rc = tc_parse(argc, argv, &cmdline, NULL, &t);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tc_request(&t, TD_CTL_PAUSE, NULL, NULL);
	if (rc == -EALREADY)
		return tc_error(TC_EXIT_ALREADY,
				"minor %d of tapdisk %d is already paused (nothing changed)",
				t.minor, (int)t.pid);
	return rc < 0 ? tc_fail() : TC_EXIT_OK;
}
