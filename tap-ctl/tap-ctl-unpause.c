// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl unpause: reopen the images (or, with -a, a new leaf) and resume. */
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl unpause -p PID -m MINOR [-a TYPE:/PATH] [-h]\n"
	       "  -a  resume on this image (same size) instead of the old one\n");
}

int tap_ctl_unpause(int argc, char **argv)
{
	static struct td_ctl_msg req, rep;
	struct tc_target t = { .pid = -1, .minor = -1 };
	char params[TD_PARAMS_MAX] = "";
	const char *image = NULL;
	int c, err;

	while ((c = getopt(argc, argv, ":p:m:a:h")) != -1) {
		switch (c) {
		case 'p':
		case 'm':
			err = tc_target_opt(&t, c, optarg);
			if (err)
				return err;
			break;
		case 'a':
			image = optarg;
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
	if (image) {
		err = tc_image_arg(image, params, sizeof(params));
		if (err)
			return err;
	}
	if (tdc_set_params(&req.body.open, params) < 0)
		return tc_error(TC_EXIT_USAGE, "%s", tdc_errmsg());
	req.type = TD_CTL_UNPAUSE;
	if (tc_request(&t, &req, &rep) < 0)
		return tc_fail();
	return TC_EXIT_OK;
}
