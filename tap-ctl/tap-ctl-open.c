// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl open: open an image (and its parents) in a tapdisk. */
#include <stdio.h>
#include <unistd.h>

#include "tap-ctl.h"

static void usage(void)
{
	printf("usage: tap-ctl open -p PID -m MINOR -a TYPE:/PATH [-R] [-e MINOR] [-t SECS] [-D] [-h]\n"
	       "  -R  read-only    -e  secondary of MINOR    -t  request timeout (s)\n"
	       "  -D  no O_DIRECT\n");
}

int tap_ctl_open(int argc, char **argv)
{
	static struct td_ctl_msg req, rep;
	struct td_ctl_open *o = &req.body.open;
	struct tc_target t = { .pid = -1, .minor = -1 };
	char params[TD_PARAMS_MAX];
	const char *image = NULL;
	long v;
	int c, err;

	o->secondary = -1;
	while ((c = getopt(argc, argv, ":p:m:a:Re:t:Dh")) != -1) {
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
		case 'R':
			o->flags |= TD_OPEN_RDONLY;
			break;
		case 'D':
			o->flags |= TD_OPEN_NO_O_DIRECT;
			break;
		case 'e':
			if (!tc_parse_long(optarg, 0, TC_MINOR_MAX, &v))
				return tc_error(TC_EXIT_USAGE,
						"invalid -e minor '%s' (a number from 0 to %d)",
						optarg, TC_MINOR_MAX);
			o->flags |= TD_OPEN_SECONDARY;
			o->secondary = (int32_t)v;
			break;
		case 't':
			if (!tc_parse_long(optarg, 1, TC_TIMEOUT_MAX, &v))
				return tc_error(TC_EXIT_USAGE,
						"invalid -t timeout '%s' (seconds, from 1 to %d)",
						optarg, TC_TIMEOUT_MAX);
			o->timeout_s = (uint32_t)v;
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
	if (!image)
		return tc_error(TC_EXIT_USAGE, "missing -a type:/path");
	err = tc_image_arg(image, params, sizeof(params));
	if (err)
		return err;
	if (tdc_set_params(o, params) < 0)
		return tc_error(TC_EXIT_USAGE, "%s", tdc_errmsg());
	req.type = TD_CTL_OPEN;
	if (tc_request(&t, &req, &rep) < 0)
		return tc_fail();
	return TC_EXIT_OK;
}
